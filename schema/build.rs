// sqlx::migrate! embeds the migration files at compile time; without this, a newly added
// migration would not trigger a rebuild (sqlx's documented fix).
fn main() {
    println!("cargo:rerun-if-changed=postgres/migrations");
}
