//! The order-svc binary: everything is the library's `App` and `saga_platform::service::main`.

/// mimalloc instead of glibc's malloc: a profile under load showed a third of the service's
/// CPU in glibc's malloc and free (see docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    saga_platform::service::main::<order_svc::App>().await;
}
