//! Rebuilds the server when a migration changes: `sqlx::migrate!` embeds the files, but on
//! stable Rust cargo does not see them as inputs, and a build would keep the old ones.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
