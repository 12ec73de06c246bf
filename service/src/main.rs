//! `steward-service serve`: listens on STEWARD_LISTEN (default 127.0.0.1:8080).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("STEWARD_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let app = steward_service::Application::bind(&addr).await?;
    eprintln!("steward-service listening on 127.0.0.1:{}", app.port());
    app.serve().await
}
