//! Placeholder: written by the patch work.
