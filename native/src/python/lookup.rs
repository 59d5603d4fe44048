//! The lookup hook (`crate::lookup`): `lookup_hook_set(callable | None)`, the
//! `LookupTicket` Python answers, and `lookup_counts()` for `/metrics`.
//!
//! The hook is called on one dedicated thread (`bastion-lookups`), never on a
//! tokio worker: lookups queue there (bounded, [`QUEUE`]; a full queue loses
//! the lookup, and its request defers) and each batch takes the GIL once.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::lookup::{self, Answer, Hook, Kind, Reply};

/// Most lookups queued for the hook thread.
const QUEUE: usize = 1024;
/// Most lookups handed to Python under one GIL acquisition.
const BATCH: usize = 256;

struct Job {
    kind: Kind,
    value: Vec<u8>,
    reply: Reply,
}

/// The Python callable, `hook(kind, value, ticket)`.
static CALLABLE: Mutex<Option<Py<PyAny>>> = Mutex::new(None);

struct Queued(SyncSender<Job>);

impl Hook for Queued {
    fn ask(&self, kind: Kind, value: Vec<u8>, reply: Reply) -> bool {
        match self.0.try_send(Job { kind, value, reply }) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The queue of the hook thread, started on first use.
fn queue() -> Result<Arc<Queued>, String> {
    static QUEUED: Mutex<Option<Arc<Queued>>> = Mutex::new(None);
    let mut queued = QUEUED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(queued) = queued.as_ref() {
        return Ok(queued.clone());
    }
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("bastion-lookups".into())
        .spawn(move || run(rx))
        .map_err(|e| format!("cannot start the lookup thread: {e}"))?;
    let started = Arc::new(Queued(tx));
    *queued = Some(started.clone());
    Ok(started)
}

fn run(rx: Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        Python::attach(|py| {
            let callable = CALLABLE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|c| c.clone_ref(py));
            for job in batch {
                // No hook any more: the reply is dropped, the lookup lost.
                let Some(callable) = &callable else {
                    continue;
                };
                call(py, callable, job);
            }
        });
    }
}

fn call(py: Python<'_>, callable: &Py<PyAny>, job: Job) {
    let value: Bound<'_, PyAny> = match job.kind {
        Kind::Cert => PyBytes::new(py, &job.value).into_any(),
        Kind::ApiKey
        | Kind::Introspection
        | Kind::Jwks
        | Kind::Client
        | Kind::Exchanged
        | Kind::SigningKey
        | Kind::Session => match std::str::from_utf8(&job.value) {
            Ok(text) => PyString::new(py, text).into_any(),
            Err(_) => return,
        },
    };
    let ticket = match Py::new(
        py,
        LookupTicket {
            reply: Mutex::new(Some(job.reply)),
        },
    ) {
        Ok(ticket) => ticket,
        Err(error) => {
            error.write_unraisable(py, None);
            return;
        }
    };
    if let Err(error) = callable.call1(py, (job.kind.label(), value, ticket)) {
        // The hook only schedules; a failure to do so is a bug worth a traceback.
        error.write_unraisable(py, None);
    }
}

/// One lookup's answer (`found()`, `refused()`, `unavailable(code, title,
/// detail)` or `lost()`), given once, after what was found is pushed. A ticket dropped
/// unanswered is a lost lookup.
#[pyclass(module = "bastion._native", frozen)]
struct LookupTicket {
    reply: Mutex<Option<Reply>>,
}

impl LookupTicket {
    fn reply(&self) -> PyResult<Reply> {
        self.reply
            .lock()
            .map_err(|_| PyRuntimeError::new_err("lookup ticket poisoned"))?
            .take()
            .ok_or_else(|| PyRuntimeError::new_err("this lookup was answered already"))
    }

    fn answer(&self, answer: Answer) -> PyResult<()> {
        self.reply()?.send(answer);
        Ok(())
    }
}

#[pymethods]
impl LookupTicket {
    /// What was found is pushed (a record, or a refusal where one is cached).
    fn found(&self) -> PyResult<()> {
        self.answer(Answer::Found)
    }

    /// The credential is refused (pushed where the native caches hold refusals).
    fn refused(&self) -> PyResult<()> {
        self.answer(Answer::Refused)
    }

    /// The lookup failed with Python's `ServiceUnavailableError` (`code`,
    /// `title`, `detail`): the requests waiting for it answer its 503.
    /// `ValueError` for a failure the native path does not render (the
    /// ticket stays unanswered: drop it, the lookup is lost).
    fn unavailable(&self, code: &str, title: &str, detail: &str) -> PyResult<()> {
        let why = lookup::unavailable(code, title, detail)
            .ok_or_else(|| PyValueError::new_err(format!("{code}: not rendered natively")))?;
        self.answer(Answer::Unavailable(Arc::new(why)))
    }

    /// The lookup ran past Python's bound for it: the requests waiting for it
    /// answer the kind's 503 as a lost lookup does (`lookup::lost`, its one
    /// home), counted `unavailable`; nothing is cached.
    fn lost(&self) -> PyResult<()> {
        self.reply()?.lost();
        Ok(())
    }
}

/// Install `hook(kind, value, ticket)` (`None`: remove it; misses defer then).
#[pyfunction]
#[pyo3(signature = (hook))]
fn lookup_hook_set(hook: Option<Py<PyAny>>) -> PyResult<()> {
    match hook {
        Some(hook) => {
            let queued = queue().map_err(PyRuntimeError::new_err)?;
            *CALLABLE.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
            lookup::set_hook(Some(queued));
        }
        None => {
            lookup::set_hook(None);
            let old = CALLABLE.lock().unwrap_or_else(|p| p.into_inner()).take();
            drop(old);
        }
    }
    Ok(())
}

/// Whether a lookup hook is installed.
#[pyfunction]
fn lookup_hooked() -> bool {
    lookup::hooked()
}

/// `[(kind, outcome, count)]` of `bastion_native_lookups_total`.
#[pyfunction]
fn lookup_counts() -> Vec<(&'static str, &'static str, u64)> {
    lookup::counts()
}

/// Add this part's functions and classes to the module.
pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<LookupTicket>()?;
    m.add_function(wrap_pyfunction!(lookup_hook_set, m)?)?;
    m.add_function(wrap_pyfunction!(lookup_hooked, m)?)?;
    m.add_function(wrap_pyfunction!(lookup_counts, m)?)?;
    Ok(())
}
