//! Placeholder: written by the pki work.
