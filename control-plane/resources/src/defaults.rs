//! Placeholder: written by the defaults work.
