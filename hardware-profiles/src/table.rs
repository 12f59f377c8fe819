//! docs/hardware-profiles.md, generated from the profile files.
//!
//! `cargo run -p kedge-hardware-profiles --bin profiles-table > docs/hardware-profiles.md`
//! writes it; a test fails when the checked-in file differs.

use std::fmt::Write;

use crate::profile::Signal;
use crate::quantity::format_duration;
use crate::{MachineInfo, Profile, builtin_profiles, generic};

/// The command that regenerates the document.
pub const REGENERATE: &str =
    "cargo run -p kedge-hardware-profiles --bin profiles-table > docs/hardware-profiles.md";

fn threshold(p: &Profile, s: Signal) -> String {
    p.eviction_hard
        .get(&s)
        .map(|t| t.to_string())
        .unwrap_or_else(|| "—".into())
}

fn soft(p: &Profile, s: Signal) -> String {
    p.eviction_soft
        .get(&s)
        .map(|t| format!("{} ({})", t.threshold, format_duration(t.grace_period)))
        .unwrap_or_else(|| "—".into())
}

/// The whole document.
pub fn markdown() -> String {
    let profiles = builtin_profiles();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Hardware profiles\n\n\
         <!-- Generated from hardware-profiles/profiles/*.toml; do not edit. Regenerate with\n     \
         {REGENERATE} -->\n\n\
         Each device class kedge knows has a profile: a TOML file in\n\
         `hardware-profiles/profiles/`, compiled into `kedge-agent`. The agent detects the\n\
         class (`kedge-agent profile detect`) or is told it (`--profile <name>`, or\n\
         `--profile /etc/kedge/profile.toml` for a device of your own; `kedge-agent profile\n\
         check <file>` validates one). Each file says why its numbers are what they are.\n\n\
         Memory is what the kernel reports (MemTotal), a little under the RAM on the box.\n\
         The agent and containerd budgets are part of kubeReserved. Allocatable is the\n\
         kubelet's formula, capacity − systemReserved − kubeReserved − evictionHard\n\
         memory.available, shown here for a machine with exactly the profile's memory.\n\
         The node is labelled `kedge.io/profile` and `node.kubernetes.io/instance-type`\n\
         (the profile name) and `kubernetes.io/arch`.\n"
    );
    let mut header = String::from("| |");
    let mut rule = String::from("|---|");
    for p in &profiles {
        let _ = write!(header, " {} |", p.name);
        rule.push_str("---|");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    let mut row = |label: &str, f: &dyn Fn(&Profile) -> String| {
        let mut line = format!("| {label} |");
        for p in &profiles {
            let _ = write!(line, " {} |", f(p));
        }
        let _ = writeln!(out, "{line}");
    };
    row("architectures", &|p| p.hardware.architectures.join(", "));
    row("CPUs", &|p| p.hardware.cpus.to_string());
    row("memory (MemTotal)", &|p| p.hardware.memory.to_string());
    row("agent budget", &|p| p.budgets.agent.to_string());
    row("containerd budget", &|p| p.budgets.containerd.to_string());
    row("systemd MemoryMax / MemoryHigh", &|p| {
        format!("{} / {}", p.unit_memory_max(), p.unit_memory_high())
    });
    row("systemReserved memory, cpu", &|p| {
        format!("{}, {}", p.system_reserved.memory, p.system_reserved.cpu)
    });
    row("kubeReserved memory, cpu", &|p| {
        format!("{}, {}", p.kube_reserved.memory, p.kube_reserved.cpu)
    });
    row("evictionHard memory.available", &|p| {
        threshold(p, Signal::MemoryAvailable)
    });
    row("evictionHard nodefs.available", &|p| {
        threshold(p, Signal::NodefsAvailable)
    });
    row("evictionSoft memory.available (grace)", &|p| {
        soft(p, Signal::MemoryAvailable)
    });
    row("evictionSoft nodefs.available (grace)", &|p| {
        soft(p, Signal::NodefsAvailable)
    });
    row("allocatable memory", &|p| {
        let machine = MachineInfo {
            model: None,
            mem_total: p.hardware.memory,
            cpus: p.hardware.cpus,
            arch: String::new(),
        };
        p.allocatable(&p.capacity(&machine)).memory.to_string()
    });
    row("maxPods", &|p| p.max_pods.to_string());
    row("image GC high / low %", &|p| {
        format!(
            "{} / {}",
            p.image_gc_high_threshold_percent, p.image_gc_low_threshold_percent
        )
    });
    row("containerLogMaxSize × files", &|p| {
        format!(
            "{} × {}",
            p.container_log_max_size, p.container_log_max_files
        )
    });
    row("tunnel keepalive / backoff cap", &|p| {
        format!(
            "{} / {}",
            format_duration(p.tunnel.keepalive),
            format_duration(p.tunnel.backoff_cap)
        )
    });
    row("sync batch size", &|p| p.sync_batch_size.to_string());

    let _ = writeln!(
        out,
        "\n## Detection\n\n\
         A built-in profile is picked when the model string (`/proc/device-tree/model`, or\n\
         the DMI vendor and product name on x86) contains one of its strings, MemTotal lies\n\
         in its range, and the agent's architecture is one it lists. Anything else gets\n\
         `generic`. `--profile` overrides detection.\n\n\
         | profile | model contains | MemTotal |\n|---|---|---|"
    );
    for p in &profiles {
        match &p.detect {
            Some(d) => {
                let models: Vec<String> =
                    d.model_contains.iter().map(|m| format!("`{m}`")).collect();
                let _ = writeln!(
                    out,
                    "| {} | {} | {} – {} |",
                    p.name,
                    models.join(", "),
                    d.mem_total_min,
                    d.mem_total_max
                );
            }
            None if p.name == crate::GENERIC => {
                let _ = writeln!(
                    out,
                    "| {} | (everything no other profile matches) | |",
                    p.name
                );
            }
            None => {
                let _ = writeln!(out, "| {} | (never detected: `--profile` only) | |", p.name);
            }
        }
    }
    let _ = writeln!(
        out,
        "\n## The generic profile\n\n\
         `generic` is derived from the machine it runs on. `profiles/generic.toml` gives\n\
         what does not scale (the column above shows it for a 1 GiB, 1-CPU machine); the\n\
         rest follows this rule:\n\n{}",
        generic::RULE
    );
    out
}
