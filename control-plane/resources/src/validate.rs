//! Placeholder: written by the validate work.
