fn main() -> std::process::ExitCode {
    relayit::cli::main()
}
