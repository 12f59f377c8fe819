//! Kubernetes API machinery that needs no I/O and knows no concrete type.
//!
//! - [`patch`]: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//!   strategic merge patch, the three patch types `kubectl` sends.
//! - [`schema`]: what strategic merge patch needs to know about an object's
//!   shape ([`schema::PatchSchema`]); `kedge-resources` implements it from
//!   the OpenAPI documents it generates.
//! - [`field`]: field errors as the apiserver reports them in a `Status`.
//! - [`selector`]: label and field selectors: parsing and matching.
//! - [`validation`]: name, label and annotation rules shared by every type.
//!
//! Must not depend on: any Kubernetes type crate (k8s-openapi), any I/O.
//! Everything here works on `serde_json::Value`.

pub mod field;
pub mod patch;
pub mod schema;
pub mod selector;
pub mod validation;
