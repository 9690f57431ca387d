// glibc's malloc cost a sixth of the API's CPU under load (many small, short-lived
// allocations across threads); jemalloc's thread caches cost about a quarter of that, and
// it returns freed memory (mimalloc, also tried, kept the batch phase's peak at 145-217 MiB).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    relayit::cli::main()
}
