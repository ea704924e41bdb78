//! flagctl: the command line for flagd (commands arrive with the client issue).

fn main() {
    eprintln!("flagctl: not built yet");
    std::process::exit(2);
}
