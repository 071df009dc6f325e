//! The view a mount serves, swapped whole on a live reload: the rebuilt
//! view is renumbered after the one it replaces ([`View::renumber_like`])
//! and the replaced one stays readable a while.

use std::sync::{Arc, Mutex, RwLock};

use crate::view::{Change, Ino, View};

/// The view being served, swappable for live reloads. Views replaced by
/// a reload are kept so that processes holding inodes of removed files
/// can still read them (as on a local filesystem after an unlink).
pub struct ViewState {
    current: RwLock<Arc<View>>,
    retired: Mutex<Vec<Arc<View>>>,
}

/// How many replaced views stay readable.
const RETIRED_VIEWS: usize = 16;

impl ViewState {
    pub fn new(view: View) -> Arc<Self> {
        Arc::new(ViewState {
            current: RwLock::new(Arc::new(view)),
            retired: Mutex::new(Vec::new()),
        })
    }

    pub fn current(&self) -> Arc<View> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The view that knows `ino`: the current one, else the newest
    /// retired one that had it.
    pub fn holding(&self, ino: Ino) -> Option<Arc<View>> {
        let cur = self.current();
        if cur.get(ino).is_some() {
            return Some(cur);
        }
        let retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.iter().rev().find(|v| v.get(ino).is_some()).cloned()
    }

    /// Swap in `new` (renumbered against the current view) and return
    /// what the kernel must forget.
    pub fn replace(&self, mut new: View) -> Vec<Change> {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        new.renumber_like(&cur);
        let changes = new.changes_since(&cur);
        let old = std::mem::replace(&mut *cur, Arc::new(new));
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.push(old);
        if retired.len() > RETIRED_VIEWS {
            retired.remove(0);
        }
        changes
    }
}
