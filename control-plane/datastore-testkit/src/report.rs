//! What every benchmark writes into `docs/benchmarks.md`: the machine line,
//! the date, and its own section between two markers.
//!
//! Each benchmark owns one section, `<!-- NAME:begin -->` … `<!-- NAME:end -->`;
//! re-running it rewrites that section and leaves the rest of the file alone.

use std::path::{Path, PathBuf};

/// `docs/benchmarks.md` of this workspace.
pub fn benchmarks_md() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md")
}

/// CPUs, memory and kernel, e.g. "2 CPUs, 24 GiB, Linux 6.1.0".
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cpus} CPUs, {mem_gib:.0} GiB, Linux {}", kernel.trim())
}

/// Today's date as YYYY-MM-DD (local time, from `date`).
pub fn today() -> String {
    std::process::Command::new("date")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "today".into(), |s| s.trim().to_string())
}

/// `existing` with the section `name` replaced by `section`, or with it
/// appended at the end if it is not there yet.
pub fn replace_section(existing: &str, name: &str, section: &str) -> String {
    let begin = format!("<!-- {name}:begin -->");
    let end = format!("<!-- {name}:end -->");
    match (existing.find(&begin), existing.find(&end)) {
        (Some(b), Some(e)) if b < e => format!(
            "{}{begin}\n{section}{end}{}",
            &existing[..b],
            &existing[e + end.len()..]
        ),
        _ => format!("{}\n{begin}\n{section}{end}\n", existing.trim_end()),
    }
}

/// Rewrites the section `name` of the Markdown file at `path` (created if
/// missing), atomically.
pub fn write_section(path: &Path, name: &str, section: &str) -> std::io::Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_else(|_| "# Benchmarks\n".into());
    let tmp = path.with_extension("md.tmp");
    std::fs::write(&tmp, replace_section(&existing, name, section))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_its_own_section() {
        let doc = "# B\n<!-- a:begin -->\nold a\n<!-- a:end -->\n<!-- b:begin -->\nold b\n<!-- b:end -->\n";
        let out = replace_section(doc, "b", "new b\n");
        assert_eq!(
            out,
            "# B\n<!-- a:begin -->\nold a\n<!-- a:end -->\n<!-- b:begin -->\nnew b\n<!-- b:end -->\n"
        );
        assert_eq!(replace_section(&out, "b", "new b\n"), out);
    }

    #[test]
    fn appends_a_missing_section() {
        let out = replace_section("# B\n\ntext\n", "c", "c\n");
        assert_eq!(out, "# B\n\ntext\n<!-- c:begin -->\nc\n<!-- c:end -->\n");
    }
}
