//! The echo example as a fixture: the interop and adversarial tests run the very
//! server `cargo run --example echo` runs, in the test's own runtime.

#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/echo.rs"]
mod echo_example;

use std::net::SocketAddr;

/// Starts the echo example's server on 127.0.0.1 (port 0) in the current tokio runtime
/// and returns its address. `compression`: negotiate permessage-deflate when offered.
pub async fn spawn_echo(compression: bool) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(echo_example::serve(listener, compression));
    addr
}
