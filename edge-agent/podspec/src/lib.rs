//! Turns a Pod and what it references into OCI runtime specs and volume directories: env, volumes, security context, resources
//!
//! (being built; see the crate owner's first commit)
