//! The `callguard` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    callguard::cli::main()
}
