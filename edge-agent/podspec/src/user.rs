//! The user a container runs as, as the kubelet and containerd's CRI decide it.
//!
//! - The user is `runAsUser` (container, else pod), else the user part of the
//!   image's `USER` (`uid`, `name`, `uid:gid`, `name:group`), else root. As
//!   upstream, the image's group part is not used when the kubelet passes a
//!   user on: the group comes from `runAsGroup`, else from the user's entry in
//!   the image's `/etc/passwd`, else 0.
//! - A user *name* needs the image's `/etc/passwd` (the caller reads it from
//!   the rootfs); without it, or without the name in it, it is an error.
//! - The additional groups are the primary group, the groups of the image's
//!   `/etc/group` that list the user, `supplementalGroups` and `fsGroup`,
//!   sorted and without duplicates (containerd's `WithAdditionalGIDs`).

use k8s_openapi::api::core::v1::{Container, Pod};

/// Why the user could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error(
        "image user {user:?} is a name and the image has no /etc/passwd: set runAsUser, or pass the rootfs's /etc/passwd in ImageConfig"
    )]
    NoPasswd { user: String },
    #[error(
        "unable to find user {user}: no matching entries in passwd file: set runAsUser, or fix the image's USER"
    )]
    UnknownUser { user: String },
    #[error("{what} {value} is out of range: use an id from 0 to 4294967295")]
    OutOfRange { what: &'static str, value: i64 },
    #[error("container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})")]
    RunAsRoot { pod: String, container: String },
    #[error(
        "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
    )]
    ImageRoot { pod: String, container: String },
    #[error(
        "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
    )]
    NonNumericUser {
        user: String,
        pod: String,
        container: String,
    },
}

/// The process identity for the OCI spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
}

fn passwd_entries(passwd: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    passwd.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        Some(PasswdEntry {
            name: f.first()?,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
        })
    })
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn group_entries(group: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    group.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        Some(GroupEntry {
            name: f.first()?,
            gid: f.get(2)?.parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

fn id(what: &'static str, value: i64) -> Result<u32, UserError> {
    u32::try_from(value).map_err(|_| UserError::OutOfRange { what, value })
}

/// `name_namespace(uid)`, as upstream's `format.Pod`.
pub(crate) fn pod_desc(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// Decides the user, group and additional groups of `container`.
///
/// `image_user` is the image config's `User`; `passwd` and `group` are the
/// contents of the image's `/etc/passwd` and `/etc/group`, when it has them.
pub fn process_user(
    pod: &Pod,
    container: &Container,
    image_user: Option<&str>,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<ProcessUser, UserError> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user));
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group));
    let run_as_non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or(pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);

    let image_user_part = image_user
        .map(|u| u.split(':').next().unwrap_or(""))
        .filter(|u| !u.is_empty());

    // the user: a uid, and a name when one is known
    let (uid, name): (u32, Option<String>) = match (run_as_user, image_user_part) {
        (Some(u), _) => {
            let uid = id("runAsUser", u)?;
            let name = passwd.and_then(|p| {
                passwd_entries(p)
                    .find(|e| e.uid == uid)
                    .map(|e| e.name.to_string())
            });
            (uid, name)
        }
        (None, Some(user)) => match user.parse::<u32>() {
            Ok(uid) => {
                let name = passwd.and_then(|p| {
                    passwd_entries(p)
                        .find(|e| e.uid == uid)
                        .map(|e| e.name.to_string())
                });
                (uid, name)
            }
            Err(_) => {
                let p = passwd.ok_or_else(|| UserError::NoPasswd {
                    user: user.to_string(),
                })?;
                let entry = passwd_entries(p).find(|e| e.name == user).ok_or_else(|| {
                    UserError::UnknownUser {
                        user: user.to_string(),
                    }
                })?;
                (entry.uid, Some(user.to_string()))
            }
        },
        (None, None) => (
            0,
            passwd.and_then(|p| {
                passwd_entries(p)
                    .find(|e| e.uid == 0)
                    .map(|e| e.name.to_string())
            }),
        ),
    };

    if run_as_non_root {
        let container_name = container.name.clone();
        if let Some(u) = run_as_user {
            if u == 0 {
                return Err(UserError::RunAsRoot {
                    pod: pod_desc(pod),
                    container: container_name,
                });
            }
        } else {
            match image_user_part {
                None => {
                    return Err(UserError::ImageRoot {
                        pod: pod_desc(pod),
                        container: container_name,
                    });
                }
                Some(u) => match u.parse::<u32>() {
                    Ok(0) => {
                        return Err(UserError::ImageRoot {
                            pod: pod_desc(pod),
                            container: container_name,
                        });
                    }
                    Ok(_) => {}
                    Err(_) => {
                        return Err(UserError::NonNumericUser {
                            user: u.to_string(),
                            pod: pod_desc(pod),
                            container: container_name,
                        });
                    }
                },
            }
        }
    }

    let gid = match run_as_group {
        Some(g) => id("runAsGroup", g)?,
        None => passwd
            .and_then(|p| passwd_entries(p).find(|e| e.uid == uid).map(|e| e.gid))
            .unwrap_or(0),
    };

    let mut additional = vec![gid];
    if let (Some(name), Some(group)) = (&name, group) {
        additional.extend(
            group_entries(group)
                .filter(|g| g.name != name && g.members.contains(&name.as_str()))
                .map(|g| g.gid),
        );
    }
    for g in pod_sc
        .and_then(|s| s.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
    {
        additional.push(id("supplementalGroups", *g)?);
    }
    if let Some(fs_group) = pod_sc.and_then(|s| s.fs_group) {
        additional.push(id("fsGroup", fs_group)?);
    }
    additional.sort_unstable();
    additional.dedup();
    Ok(ProcessUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
                          # a comment\n\
                          daemon:x:1:1::/:/bin/false\n\
                          nginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin\n\
                          app:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
                         nginx:x:101:\n\
                         app:x:1000:\n\
                         video:x:44:app,nginx\n\
                         audio:x:29:app\n";

    fn pod(pod_sc: &str, container_sc: &str) -> (Pod, Container) {
        let p: Pod = serde_yaml::from_str(&format!(
            "metadata: {{name: p, namespace: ns, uid: u1}}\n\
             spec: {{securityContext: {pod_sc}, containers: [{{name: c, securityContext: {container_sc}}}]}}"
        ))
        .unwrap();
        let c = p.spec.as_ref().unwrap().containers[0].clone();
        (p, c)
    }

    #[test]
    fn user_table() {
        // (pod sc, container sc, image user, passwd?, -> (uid, gid, additional))
        type Case<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            bool,
            (u32, u32, &'a [u32]),
        );
        let cases: &[Case] = &[
            ("{}", "{}", None, true, (0, 0, &[0])),
            ("{}", "{}", None, false, (0, 0, &[0])),
            (
                "{}",
                "{runAsUser: 1000}",
                None,
                true,
                (1000, 1000, &[29, 44, 1000]),
            ),
            ("{}", "{runAsUser: 1000}", None, false, (1000, 0, &[0])),
            (
                "{}",
                "{runAsUser: 1000, runAsGroup: 3000}",
                None,
                true,
                (1000, 3000, &[29, 44, 3000]),
            ),
            (
                "{runAsUser: 2000, runAsGroup: 2001}",
                "{}",
                None,
                false,
                (2000, 2001, &[2001]),
            ),
            // the container overrides the pod
            (
                "{runAsUser: 2000}",
                "{runAsUser: 1000}",
                None,
                false,
                (1000, 0, &[0]),
            ),
            (
                "{supplementalGroups: [5, 6], fsGroup: 7}",
                "{runAsUser: 1}",
                None,
                false,
                (1, 0, &[0, 5, 6, 7]),
            ),
            // image users: numeric, named, with a group part (not used, as upstream)
            ("{}", "{}", Some("101"), true, (101, 101, &[44, 101])),
            ("{}", "{}", Some("nginx"), true, (101, 101, &[44, 101])),
            (
                "{}",
                "{}",
                Some("1000:44"),
                true,
                (1000, 1000, &[29, 44, 1000]),
            ),
            (
                "{}",
                "{}",
                Some("nginx:video"),
                true,
                (101, 101, &[44, 101]),
            ),
            ("{}", "{}", Some("4242"), true, (4242, 0, &[0])),
            ("{}", "{}", Some("4242"), false, (4242, 0, &[0])),
            // runAsUser beats the image
            ("{}", "{runAsUser: 7}", Some("nginx"), true, (7, 0, &[0])),
            (
                "{}",
                "{runAsGroup: 9}",
                Some("nginx"),
                true,
                (101, 9, &[9, 44]),
            ),
        ];
        for (pod_sc, c_sc, image_user, with_files, (uid, gid, extra)) in cases {
            let (p, c) = pod(pod_sc, c_sc);
            let (pw, gr) = if *with_files {
                (Some(PASSWD), Some(GROUP))
            } else {
                (None, None)
            };
            let u = process_user(&p, &c, *image_user, pw, gr).unwrap();
            assert_eq!(
                (u.uid, u.gid, u.additional_gids.as_slice()),
                (*uid, *gid, *extra),
                "pod {pod_sc} container {c_sc} image {image_user:?} files {with_files}"
            );
        }
    }

    #[test]
    fn user_errors() {
        let cases: &[(&str, &str, Option<&str>, bool, &str)] = &[
            (
                "{}",
                "{}",
                Some("nginx"),
                false,
                "image user \"nginx\" is a name and the image has no /etc/passwd",
            ),
            (
                "{}",
                "{}",
                Some("nobody"),
                true,
                "unable to find user nobody",
            ),
            (
                "{}",
                "{runAsUser: -1}",
                None,
                true,
                "runAsUser -1 is out of range",
            ),
            (
                "{}",
                "{runAsUser: 0, runAsNonRoot: true}",
                None,
                true,
                "container's runAsUser breaks non-root policy (pod: \"p_ns(u1)\", container: c)",
            ),
            (
                "{runAsNonRoot: true}",
                "{}",
                None,
                true,
                "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)",
            ),
            (
                "{runAsNonRoot: true}",
                "{}",
                Some("0"),
                true,
                "image will run as root",
            ),
            (
                "{runAsNonRoot: true}",
                "{}",
                Some("nginx"),
                true,
                "image has non-numeric user (nginx), cannot verify user is non-root",
            ),
        ];
        for (pod_sc, c_sc, image_user, with_files, want) in cases {
            let (p, c) = pod(pod_sc, c_sc);
            let (pw, gr) = if *with_files {
                (Some(PASSWD), Some(GROUP))
            } else {
                (None, None)
            };
            let err = process_user(&p, &c, *image_user, pw, gr)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{pod_sc} {c_sc} {image_user:?}: {err}");
        }
        // runAsNonRoot is satisfied by a non-zero user
        let (p, c) = pod("{runAsNonRoot: true}", "{runAsUser: 1000}");
        assert!(process_user(&p, &c, None, None, None).is_ok());
        let (p, c) = pod("{runAsNonRoot: true}", "{}");
        assert!(process_user(&p, &c, Some("1000"), None, None).is_ok());
    }
}
