//! Type-erased task data: results, channel values and bound inputs.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A type's name and `TypeId`, usable in statics.
#[derive(Clone, Copy)]
pub struct TypeInfo {
    name: fn() -> &'static str,
    id: fn() -> TypeId,
}

impl TypeInfo {
    /// The information of `T`.
    pub const fn of<T: 'static>() -> Self {
        TypeInfo {
            name: std::any::type_name::<T>,
            id: TypeId::of::<T>,
        }
    }

    /// The type's name.
    pub fn name(&self) -> &'static str {
        (self.name)()
    }

    /// The type's `TypeId`.
    pub fn id(&self) -> TypeId {
        (self.id)()
    }
}

impl fmt::Debug for TypeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reading a value, a result or a channel key went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// A value was asked for as another type than the one stored.
    #[error("{what} holds a `{found}`, not a `{expected}`; ask for the type the producer returns")]
    TypeMismatch {
        /// Which value ("the result of task 'x'", "channel key 'k'").
        what: String,
        /// The type asked for.
        expected: &'static str,
        /// The type stored.
        found: String,
    },

    /// A value could not be encoded, decoded or copied.
    #[error("cannot copy a value of type `{type_name}` through serde: {message}")]
    Codec {
        /// The value's type.
        type_name: String,
        /// The codec's message.
        message: String,
    },

    /// A channel key is not set.
    #[error(
        "channel key '{key}' is not set; set it in the run's initial Channel or in an upstream task"
    )]
    ChannelKeyMissing {
        /// The key.
        key: String,
    },

    /// No result is stored for a task.
    #[error("no result for task '{task}': {reason}")]
    NoSuchResult {
        /// The task id asked for.
        task: String,
        /// Why there is none.
        reason: String,
    },
}

/// What a task may take as input or return as output: anything that can later move out of
/// process. `#[task]` checks it at compile time, spanned on the offending type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be task data: it must be Serialize + DeserializeOwned + Send + 'static",
    label = "task inputs and outputs must be able to cross a process boundary",
    note = "derive serde's Serialize and Deserialize, or pass a serializable description instead (a path, a connection string)"
)]
pub trait Data: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Data for T {}

/// A type-erased, cheaply clonable task value (a result, a channel value, a bound input).
///
/// Reading it with [`Value::get`] hands out an owned copy: through `Clone` when the type has it,
/// else through a serde round trip (so non-`Clone` data still works). A value that crossed a
/// process boundary stays encoded until it is read as a type (checked by name).
#[derive(Clone)]
pub struct Value(Repr);

#[derive(Clone)]
enum Repr {
    Live(Arc<dyn Erased>),
    Encoded(Arc<EncodedValue>),
}

pub(crate) use graflow_protocol::EncodedValue;

trait Erased: Any + Send + Sync {
    fn stored_type_id(&self) -> TypeId;
    fn stored_type_name(&self) -> &'static str;
    /// Writes a copy into `out`, which must be an `Option<T>` of the stored type.
    fn copy_into(&self, out: &mut dyn Any) -> Result<(), String>;
    fn encode(&self) -> Result<Vec<u8>, String>;
    /// The value as JSON, cut after `max` bytes.
    fn preview(&self, max: usize) -> String;
}

struct Holder<T> {
    value: Mutex<T>,
    copy: fn(&T) -> Result<T, String>,
}

impl<T: Data> Erased for Holder<T> {
    fn stored_type_id(&self) -> TypeId {
        TypeId::of::<T>()
    }

    fn stored_type_name(&self) -> &'static str {
        std::any::type_name::<T>()
    }

    fn copy_into(&self, out: &mut dyn Any) -> Result<(), String> {
        let slot = out
            .downcast_mut::<Option<T>>()
            .ok_or_else(|| "internal: copy target of another type".to_owned())?;
        let guard = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        *slot = Some((self.copy)(&guard)?);
        Ok(())
    }

    fn encode(&self) -> Result<Vec<u8>, String> {
        let guard = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        graflow_protocol::codec::encode_value(&*guard)
    }

    fn preview(&self, max: usize) -> String {
        let guard = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Bounded {
            bytes: Vec::new(),
            max,
        };
        // Stops with an error once `max` bytes are written: what was written is the preview.
        let _ = serde_json::to_writer(&mut out, &*guard);
        String::from_utf8_lossy(&out.bytes).into_owned()
    }
}

/// A writer that takes at most `max` bytes, then fails.
struct Bounded {
    bytes: Vec<u8>,
    max: usize,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.max.saturating_sub(self.bytes.len());
        if room == 0 {
            return Err(std::io::Error::other("preview full"));
        }
        let n = buf.len().min(room);
        self.bytes.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The wire encoding of task data: bincode 2, standard configuration, through serde.
pub(crate) use graflow_protocol::codec::{decode, encode};

/// Decodes a value of exactly `len` bytes as they arrive from `source` (what `#[task]` generates
/// for a task's output); a hostile length inside the bytes cannot cause a large allocation.
#[doc(hidden)]
pub fn decode_from<T: DeserializeOwned + 'static>(
    source: &mut dyn std::io::Read,
    len: u64,
) -> Result<T, String> {
    graflow_protocol::codec::decode_from(source, len)
}

fn copy_by_clone<T: Clone>(value: &T) -> Result<T, String> {
    Ok(value.clone())
}

fn copy_by_serde<T: Data>(value: &T) -> Result<T, String> {
    decode(&encode(value)?)
}

impl Value {
    /// Wraps a clonable value; copies are made with `Clone`.
    pub fn new<T: Data + Clone>(value: T) -> Self {
        Value(Repr::Live(Arc::new(Holder {
            value: Mutex::new(value),
            copy: copy_by_clone::<T>,
        })))
    }

    /// Wraps a value that is not `Clone`; copies are made by a serde (bincode) round trip.
    pub fn from_data<T: Data>(value: T) -> Self {
        Value(Repr::Live(Arc::new(Holder {
            value: Mutex::new(value),
            copy: copy_by_serde::<T>,
        })))
    }

    /// A value received in wire form; it is decoded when read as a type of that name.
    pub fn from_encoded(encoded: EncodedValue) -> Self {
        Value(Repr::Encoded(Arc::new(encoded)))
    }

    /// What a run store keeps of a result: its encoded size in bytes, and the start of its JSON
    /// form (at most `max` bytes, cut anywhere; `None` for a value that arrived encoded from
    /// another process and was not read as its type yet).
    pub fn summary(&self, max: usize) -> (Option<u64>, Option<String>) {
        match &self.0 {
            Repr::Live(live) => (
                live.encode().ok().map(|bytes| bytes.len() as u64),
                Some(live.preview(max)),
            ),
            Repr::Encoded(encoded) => (Some(encoded.bytes.len() as u64), None),
        }
    }

    /// The value in wire form.
    pub fn encode(&self) -> Result<EncodedValue, ValueError> {
        match &self.0 {
            Repr::Live(live) => Ok(EncodedValue {
                type_name: live.stored_type_name().to_owned(),
                bytes: live.encode().map_err(|message| ValueError::Codec {
                    type_name: live.stored_type_name().to_owned(),
                    message,
                })?,
            }),
            Repr::Encoded(encoded) => Ok((**encoded).clone()),
        }
    }

    /// Whether both are the same stored value (not merely equal ones).
    pub(crate) fn same(&self, other: &Value) -> bool {
        match (&self.0, &other.0) {
            (Repr::Live(a), Repr::Live(b)) => Arc::ptr_eq(a, b),
            (Repr::Encoded(a), Repr::Encoded(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The stored type's `TypeId`; `None` for a value still in wire form.
    pub fn type_id(&self) -> Option<TypeId> {
        match &self.0 {
            Repr::Live(live) => Some(live.stored_type_id()),
            Repr::Encoded(_) => None,
        }
    }

    /// The stored type's name.
    pub fn type_name(&self) -> &str {
        match &self.0 {
            Repr::Live(live) => live.stored_type_name(),
            Repr::Encoded(encoded) => &encoded.type_name,
        }
    }

    /// Whether the stored value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        self.matches(TypeInfo::of::<T>())
    }

    /// Whether the stored value has type `ty` (by `TypeId`, or by name for a value in wire form).
    pub fn matches(&self, ty: TypeInfo) -> bool {
        match &self.0 {
            Repr::Live(live) => live.stored_type_id() == ty.id(),
            Repr::Encoded(encoded) => encoded.type_name == ty.name(),
        }
    }

    /// An owned copy of the value as a `T`; `what` names the value in errors
    /// ("the result of task 'x'", "channel key 'k'").
    pub(crate) fn copy_as<T: Data>(&self, what: impl FnOnce() -> String) -> Result<T, ValueError> {
        if !self.is::<T>() {
            return Err(ValueError::TypeMismatch {
                what: what(),
                expected: std::any::type_name::<T>(),
                found: self.type_name().to_owned(),
            });
        }
        let codec_error = |message| ValueError::Codec {
            type_name: self.type_name().to_owned(),
            message,
        };
        let mut slot: Option<T> = None;
        match &self.0 {
            Repr::Live(live) => live.copy_into(&mut slot).map_err(codec_error)?,
            Repr::Encoded(encoded) => slot = Some(decode(&encoded.bytes).map_err(codec_error)?),
        }
        slot.ok_or_else(|| codec_error("the copy produced no value".to_owned()))
    }

    /// An owned copy of the value as a `T`.
    pub fn get<T: Data>(&self) -> Result<T, ValueError> {
        self.copy_as(|| "this value".to_owned())
    }

    /// The value as a `T`, moved out without a copy when this is its only handle (else a copy,
    /// as [`Value::get`]).
    pub fn into_inner<T: Data>(self) -> Result<T, ValueError> {
        self.take_as(|| "this value".to_owned())
            .map_err(|(error, _)| error)
    }

    /// [`Value::into_inner`]; `what` names the value in errors, and a value that cannot be read
    /// as a `T` comes back with the error, untouched.
    pub(crate) fn take_as<T: Data>(
        self,
        what: impl FnOnce() -> String,
    ) -> Result<T, (ValueError, Value)> {
        let movable = match &self.0 {
            Repr::Live(live) => {
                let erased: &dyn Erased = &**live;
                let any: &dyn Any = erased;
                any.is::<Holder<T>>() && Arc::strong_count(live) == 1
            }
            Repr::Encoded(_) => false,
        };
        let live = match self.0 {
            Repr::Live(live) if movable => live,
            repr => {
                let value = Value(repr);
                return match value.copy_as(what) {
                    Ok(copy) => Ok(copy),
                    Err(error) => Err((error, value)),
                };
            }
        };
        let any: Arc<dyn Any + Send + Sync> = live;
        match any.downcast::<Holder<T>>() {
            Ok(holder) => match Arc::try_unwrap(holder) {
                Ok(holder) => Ok(holder
                    .value
                    .into_inner()
                    .unwrap_or_else(PoisonError::into_inner)),
                // Not reached (the only handle, checked above); a copy all the same.
                Err(shared) => {
                    let value = Value(Repr::Live(shared));
                    match value.copy_as(what) {
                        Ok(copy) => Ok(copy),
                        Err(error) => Err((error, value)),
                    }
                }
            },
            // `is::<Holder<T>>()` held above, and a downcast cannot disagree with it.
            Err(_) => unreachable!("a Holder<T> that does not downcast to one"),
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Value<{}>", self.type_name())
    }
}

/// Autoref specialisation used by `#[task]`: `(&Wrap::<T>::NEW).value_ctor()` picks
/// [`Value::new`] when `T: Clone` and [`Value::from_data`] otherwise.
#[doc(hidden)]
pub(crate) mod spec {
    use super::{Data, Value};
    use std::marker::PhantomData;

    #[derive(Debug)]
    pub struct Wrap<T>(PhantomData<T>);

    impl<T> Wrap<T> {
        pub const NEW: Self = Wrap(PhantomData);
    }

    pub trait ViaClone<T> {
        fn value_ctor(&self) -> fn(T) -> Value;
    }

    impl<T: Data + Clone> ViaClone<T> for Wrap<T> {
        fn value_ctor(&self) -> fn(T) -> Value {
            Value::new::<T>
        }
    }

    pub trait ViaSerde<T> {
        fn value_ctor(&self) -> fn(T) -> Value;
    }

    impl<T: Data> ViaSerde<T> for &Wrap<T> {
        fn value_ctor(&self) -> fn(T) -> Value {
            Value::from_data::<T>
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
    struct NotClone {
        a: u32,
        b: String,
    }

    #[test]
    fn clone_and_serde_copies() {
        let v = Value::new(vec![1u8, 2, 3]);
        assert_eq!(v.get::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
        let w = Value::from_data(NotClone {
            a: 7,
            b: "x".into(),
        });
        assert_eq!(
            w.get::<NotClone>().unwrap(),
            NotClone {
                a: 7,
                b: "x".into()
            }
        );
        let err = v.get::<String>().unwrap_err().to_string();
        assert!(err.contains("alloc::vec::Vec<u8>"), "{err}");
    }

    /// Clone, but its serde impls always fail: only a copy by `Clone` succeeds.
    #[derive(Clone, Debug, PartialEq)]
    struct CloneOnly(u8);

    impl serde::Serialize for CloneOnly {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not serializable"))
        }
    }

    impl<'de> serde::Deserialize<'de> for CloneOnly {
        fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Err(serde::de::Error::custom("not deserializable"))
        }
    }

    #[test]
    #[allow(clippy::needless_borrow)]
    fn specialisation_picks_clone_when_available() {
        use spec::{ViaClone as _, ViaSerde as _, Wrap};
        let by_clone = (&Wrap::<CloneOnly>::NEW).value_ctor();
        assert_eq!(
            by_clone(CloneOnly(5)).get::<CloneOnly>().unwrap(),
            CloneOnly(5)
        );
        // The same type through the serde path fails: so the line above did pick Clone.
        let err = Value::from_data(CloneOnly(5))
            .get::<CloneOnly>()
            .unwrap_err();
        assert!(err.to_string().contains("not serializable"), "{err}");
        let by_serde = (&Wrap::<NotClone>::NEW).value_ctor();
        let copy = by_serde(NotClone {
            a: 1,
            b: String::new(),
        })
        .get::<NotClone>()
        .unwrap();
        assert_eq!(copy.a, 1);
    }
}
