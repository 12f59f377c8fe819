//! Linux capabilities: containerd's default set, `capabilities.add`/`drop`
//! as containerd's CRI applies them, and "all" for privileged containers.

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxCapabilitiesBuilder};

/// Why a capability list is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    #[error(
        "unknown capability {name:?} in securityContext.capabilities.{list}: use a name such as NET_ADMIN or SYS_TIME, or ALL"
    )]
    Unknown { list: &'static str, name: String },
}

/// The capabilities containerd (and Docker) give a container by default.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability the kernel may know (a privileged container gets them all;
/// runc skips those the running kernel does not know).
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::AuditControl,
    Capability::AuditRead,
    Capability::AuditWrite,
    Capability::BlockSuspend,
    Capability::Bpf,
    Capability::CheckpointRestore,
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::Kill,
    Capability::Lease,
    Capability::LinuxImmutable,
    Capability::MacAdmin,
    Capability::MacOverride,
    Capability::Mknod,
    Capability::NetAdmin,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetRaw,
    Capability::Perfmon,
    Capability::Setgid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysChroot,
    Capability::SysModule,
    Capability::SysNice,
    Capability::SysPacct,
    Capability::SysPtrace,
    Capability::SysRawio,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Syslog,
    Capability::WakeAlarm,
];

/// `NET_ADMIN`, `net_admin` or `CAP_NET_ADMIN` → the capability.
fn parse(list: &'static str, name: &str) -> Result<Capability, CapError> {
    let upper = name.trim().to_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>().map_err(|_| CapError::Unknown {
        list,
        name: name.to_string(),
    })
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("all")
}

/// The effective set for a container: everything when privileged; otherwise
/// the default set, then `add: [ALL]` (everything), `drop: [ALL]` (nothing),
/// then each named add, then each named drop (a drop wins over an add).
pub fn capability_set(
    privileged: bool,
    add: &[String],
    drop: &[String],
) -> Result<Capabilities, CapError> {
    if privileged {
        return Ok(ALL_CAPABILITIES.into_iter().collect());
    }
    let mut set: Capabilities = DEFAULT_CAPABILITIES.into_iter().collect();
    if add.iter().any(|c| is_all(c)) {
        set = ALL_CAPABILITIES.into_iter().collect();
    }
    if drop.iter().any(|c| is_all(c)) {
        set.clear();
    }
    for name in add.iter().filter(|c| !is_all(c)) {
        set.insert(parse("add", name)?);
    }
    for name in drop.iter().filter(|c| !is_all(c)) {
        set.remove(&parse("drop", name)?);
    }
    Ok(set)
}

/// The OCI capability sets for `set`: bounding, effective and permitted (no
/// inheritable, no ambient), as containerd since the CVE-2022-24769 fix.
pub fn linux_capabilities(set: Capabilities) -> LinuxCapabilities {
    LinuxCapabilitiesBuilder::default()
        .bounding(set.clone())
        .effective(set.clone())
        .permitted(set)
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()
        .expect("all fields have defaults")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(set: &Capabilities) -> Vec<String> {
        let mut v: Vec<String> = set.iter().map(|c| c.to_string()).collect();
        v.sort();
        v
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn add_and_drop_table() {
        let default_names = names(&DEFAULT_CAPABILITIES.into_iter().collect());
        type Check = Box<dyn Fn(&[String]) -> bool>;
        let cases: &[(bool, &[&str], &[&str], Check)] = &[
            (
                false,
                &[],
                &[],
                Box::new(|n| n.len() == 14 && n.contains(&"CHOWN".into())),
            ),
            (
                false,
                &["NET_ADMIN"],
                &[],
                Box::new(|n| n.len() == 15 && n.contains(&"NET_ADMIN".into())),
            ),
            (
                false,
                &["cap_sys_time"],
                &["chown"],
                Box::new(|n| {
                    n.len() == 14 && n.contains(&"SYS_TIME".into()) && !n.contains(&"CHOWN".into())
                }),
            ),
            (false, &[], &["ALL"], Box::new(|n| n.is_empty())),
            (
                false,
                &["NET_BIND_SERVICE"],
                &["all"],
                Box::new(|n| n == ["NET_BIND_SERVICE".to_string()]),
            ),
            (false, &["ALL"], &[], Box::new(|n| n.len() == 41)),
            (
                false,
                &["ALL"],
                &["SYS_ADMIN"],
                Box::new(|n| n.len() == 40 && !n.contains(&"SYS_ADMIN".into())),
            ),
            // a drop wins over an add of the same capability
            (
                false,
                &["NET_ADMIN"],
                &["NET_ADMIN"],
                Box::new(|n| !n.contains(&"NET_ADMIN".into())),
            ),
            // privileged ignores add and drop
            (true, &[], &["ALL"], Box::new(|n| n.len() == 41)),
        ];
        for (privileged, add, drop, check) in cases {
            let set = capability_set(*privileged, &s(add), &s(drop)).unwrap();
            let n = names(&set);
            assert!(
                check(&n),
                "privileged {privileged} add {add:?} drop {drop:?}: {n:?} (defaults {default_names:?})"
            );
        }
    }

    #[test]
    fn unknown_capabilities_are_errors() {
        let err = capability_set(false, &s(&["NET_ADMINN"]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "unknown capability \"NET_ADMINN\" in securityContext.capabilities.add"
            ),
            "{err}"
        );
        let err = capability_set(false, &[], &s(&["FLY"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("capabilities.drop"), "{err}");
    }

    #[test]
    fn oci_sets() {
        let caps = linux_capabilities(capability_set(false, &[], &s(&["ALL"])).unwrap());
        assert_eq!(caps.bounding().as_ref().map(|b| b.len()), Some(0));
        let caps = linux_capabilities(DEFAULT_CAPABILITIES.into_iter().collect());
        assert_eq!(caps.effective().as_ref().map(|b| b.len()), Some(14));
        assert_eq!(caps.inheritable().as_ref().map(|b| b.len()), Some(0));
        assert_eq!(caps.ambient().as_ref().map(|b| b.len()), Some(0));
    }
}
