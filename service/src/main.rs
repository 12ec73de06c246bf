//! `steward-service`: see `--help`.

use clap::Parser;
use steward_service::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            steward_service::init_logging(args.log_format);
            let app = steward_service::Application::bind(&args).await?;
            tracing::info!(listen = %args.listen, port = app.port(), "steward-service serving");
            let grace = std::time::Duration::from_millis(args.shutdown_grace_ms);
            let served = app.serve_until(steward_service::shutdown_signal());
            // In-flight requests get the grace period, then the process ends regardless.
            tokio::select! {
                r = served => r,
                _ = async {
                    steward_service::shutdown_signal().await;
                    tokio::time::sleep(grace).await;
                } => {
                    tracing::warn!("shutdown grace period over: exiting with requests in flight");
                    Ok(())
                }
            }
        }
        Command::Relay(args) => {
            steward_service::init_logging(args.log_format);
            steward_service::relay::run(args, steward_service::shutdown_signal()).await
        }
    }
}
