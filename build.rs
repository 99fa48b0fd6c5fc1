// `sqlx::migrate!` embeds migrations/ at compile time; without this a migration added to the
// folder is missed by an incremental build.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
