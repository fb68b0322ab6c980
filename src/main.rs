fn main() -> std::process::ExitCode {
    phased::cli::main()
}
