//! Integration tests, one binary (see STYLE: link time on 2 cores).

mod basics;
