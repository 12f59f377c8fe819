//! Placeholder: written by the table work.
