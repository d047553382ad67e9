//! ironlet's entry point: parse the command line and dispatch (see `ironlet::cli`).

fn main() {
    std::process::exit(ironlet::cli::main());
}
