// glibc's malloc cost a sixth of the API's CPU under load (many small, short-lived
// allocations across threads); mimalloc's thread-local free lists are much cheaper.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    relayit::cli::main()
}
