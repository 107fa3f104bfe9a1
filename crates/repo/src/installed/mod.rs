//! What snapline installs in the platform's database on an operator's command, and removes
//! again: change capture's and the Oban bridge's triggers and functions, and the NOT NULL
//! guard's checks. What runs as its owner here must lend no right to any other role.

pub(crate) mod bridge;
pub(crate) mod capture;
pub(crate) mod guard;
