//! Placeholder: written by the validation work.
