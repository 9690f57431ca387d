//! Rebuilds the crate when a migration changes: migrations are embedded in the binary
//! (`embed_migrations!`), and cargo does not otherwise notice a new migration directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
