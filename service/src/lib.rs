//! steward-service: routes HTTP requests into the database under the caller's tenant, and
//! relays outbox events outward. This is the skeleton the API issue builds on.

use axum::routing::get;
use axum::Router;

/// The HTTP application.
pub fn app() -> Router {
    Router::new().route("/healthz", get(|| async { "ok" }))
}

/// A bound server that knows its port (tests bind port 0).
pub struct Application {
    listener: tokio::net::TcpListener,
}

impl Application {
    pub async fn bind(addr: &str) -> anyhow::Result<Application> {
        Ok(Application {
            listener: tokio::net::TcpListener::bind(addr).await?,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn serve(self) -> anyhow::Result<()> {
        axum::serve(self.listener, app()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn healthz_answers_on_a_real_port() {
        let app = Application::bind("127.0.0.1:0").await.unwrap();
        let port = app.port();
        tokio::spawn(app.serve());
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("ok"), "{out}");
    }
}
