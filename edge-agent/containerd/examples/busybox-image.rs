//! Builds a busybox image tarball from the host's static busybox (Debian's
//! busybox-static), for a device with no registry in reach: put the file in
//! `<data-dir>/agent/images/` and the agent imports it at start.
//!
//! `cargo run -p kedge-containerd --example busybox-image -- OUT.tar [NAME] [oci|docker]`

use kedge_containerd::testimage::{ImageFormat, build_busybox_image};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: busybox-image OUT.tar [NAME (default busybox:latest)] [oci|docker]");
        return std::process::ExitCode::FAILURE;
    };
    let name = args.get(1).map(String::as_str).unwrap_or("busybox:latest");
    let format = match args.get(2).map(String::as_str) {
        None | Some("oci") => ImageFormat::OciLayout,
        Some("docker") => ImageFormat::DockerArchive,
        Some(other) => {
            eprintln!("busybox-image: unknown format {other:?}: use oci or docker");
            return std::process::ExitCode::FAILURE;
        }
    };
    match build_busybox_image(std::path::Path::new(out), name, format) {
        Ok(image) => {
            println!("{out}: {} ({})", image.name, image.manifest_digest);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("busybox-image: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
