//! The framework's ceiling for `bench/run.sh`: one `GET /users` route that answers a file's bytes,
//! read once at start, as shared `Bytes`, on a multi-thread tokio runtime with
//! `axum::serve`. No middleware, no logging, no metrics: what any axum service pays before
//! it does anything of its own.
//!
//! ```sh
//! cargo build --release --example bare_axum
//! target/release/examples/bare_axum FILE [ADDR]   # ADDR defaults to 127.0.0.1:18483
//! curl 'http://127.0.0.1:18483/users?page=1&per_page=25'   # the query is ignored
//! ```

use std::net::SocketAddr;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(file) = args.next() else {
        eprintln!("usage: bare_axum FILE [ADDR]");
        std::process::exit(2);
    };
    let addr: SocketAddr = args
        .next()
        .as_deref()
        .unwrap_or("127.0.0.1:18483")
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("ADDR: {e}")))?;
    let body = Bytes::from(std::fs::read(&file)?);
    let handler = move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    };
    let app = Router::new().route("/users", get(handler));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("bare_axum: serving {file} on http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await
}
