//! `config show`: the resolved configuration with sources.
