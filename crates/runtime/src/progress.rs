//! A progress bar for long `run` commands, drawn only when stderr is a terminal (logs and
//! pipes get the commands' own progress lines instead).

use std::io::IsTerminal;

pub struct TerminalBar(Option<indicatif::ProgressBar>);

impl TerminalBar {
    /// A bar drawn with indicatif's `template` when stderr is a terminal; nothing otherwise.
    pub fn on_terminal(template: &str) -> Self {
        Self(std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        }))
    }

    /// Whether a bar is drawn.
    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    pub fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
