//! Hardware profiles: the device classes kedge knows, their memory budgets and timers, validated, and detection of the class a machine belongs to
//!
//! (being built; see the crate owner's first commit)
