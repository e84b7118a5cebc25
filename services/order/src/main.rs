//! The order-svc binary: everything is the library's `App` and `saga_platform::service::main`.
// The HTTP routes are one warp filter type, nested once per route; with the catalog, OpenAPI
// and the traced PATCH routes the release build's trait solver needs more than the default 128
// levels to prove the server's future `Send` and `Unpin` (E0275).
#![recursion_limit = "256"]

/// mimalloc instead of glibc's malloc: a profile under load showed a third of the service's
/// CPU in glibc's malloc and free (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    saga_platform::service::main::<order_svc::App>().await;
}
