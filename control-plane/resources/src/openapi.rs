//! Placeholder: written by the openapi work.
