//! The flagd service binary (storage and HTTP APIs arrive with the server issue).

fn main() {
    eprintln!("flagd-server {}: the HTTP service is not built yet; see README.md", env!("CARGO_PKG_VERSION"));
    std::process::exit(1);
}
