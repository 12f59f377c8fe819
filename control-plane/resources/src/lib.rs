//! The built-in Kubernetes resources kedge serves, and everything that is
//! particular to each type.
//!
//! - [`catalog`]: every resource: group, version, kind, plural, short names,
//!   scope and subresources. Discovery, routing and OpenAPI read it.
//! - [`typed`]: decoding into the k8s-openapi type and back, which drops
//!   unknown fields and reports them for `fieldValidation=Strict`.
//! - [`defaults`] and [`validate`]: defaulting and validation as upstream's
//!   registry strategies do them.
//! - [`convert`]: between a resource's API shape and its stored shape, for
//!   resources that share storage (the two Event APIs).
//! - [`table`]: the columns `kubectl get` shows.
//! - [`openapi`]: the OpenAPI v2 and v3 documents, generated from the
//!   k8s-openapi types, and the [`kedge_apimachinery::schema::PatchSchema`]
//!   strategic merge patch walks.
//!
//! Must not depend on: the datastore, HTTP, any I/O. The apiserver calls in
//! with `serde_json::Value`s.

pub mod catalog;
pub mod convert;
pub mod defaults;
pub mod openapi;
pub mod table;
pub mod typed;
pub mod validate;
