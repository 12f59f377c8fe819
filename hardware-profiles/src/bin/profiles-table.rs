//! Prints docs/hardware-profiles.md, generated from the profile files:
//! `cargo run -p kedge-hardware-profiles --bin profiles-table > docs/hardware-profiles.md`.

fn main() {
    print!("{}", kedge_hardware_profiles::table::markdown());
}
