//! The baseline: a bare axum server that answers every ping URL with a constant 200 "OK".
//! keepwatch's ping throughput is reported as a ratio to this server's, measured in the same
//! run with the same load tool and connections.

use axum::Router;
use axum::routing::any;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let app = Router::new()
        .route("/ping/{a}", any(|| async { "OK" }))
        .route("/ping/{a}/{b}", any(|| async { "OK" }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("bare server listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
