//! Type-erased task data: results, channel values and bound inputs.

use std::any::{Any, TypeId};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// What a task may take as input or return as output: anything that can later move out of
/// process. `#[task]` checks it at compile time, spanned on the offending type.
pub trait Data: Serialize + DeserializeOwned + Send + 'static {}

impl<T: Serialize + DeserializeOwned + Send + 'static> Data for T {}

/// A type-erased, cheaply clonable task value (a result, a channel value, a bound input).
///
/// Reading it with [`Value::get`] hands out an owned copy: through `Clone` when the type has it,
/// else through a serde round trip (so non-`Clone` data still works).
#[derive(Clone)]
pub struct Value(Arc<dyn Erased>);

trait Erased: Send + Sync {
    fn stored_type_id(&self) -> TypeId;
    fn stored_type_name(&self) -> &'static str;
    /// Writes a copy into `out`, which must be an `Option<T>` of the stored type.
    fn copy_into(&self, out: &mut dyn Any) -> Result<(), String>;
}

struct Holder<T> {
    value: Mutex<T>,
    copy: fn(&T) -> Result<T, String>,
}

impl<T: Send + 'static> Erased for Holder<T> {
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
}

fn copy_by_clone<T: Clone>(value: &T) -> Result<T, String> {
    Ok(value.clone())
}

fn copy_by_serde<T: Data>(value: &T) -> Result<T, String> {
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(value, config).map_err(|e| e.to_string())?;
    let (copy, _) =
        bincode::serde::decode_from_slice::<T, _>(&bytes, config).map_err(|e| e.to_string())?;
    Ok(copy)
}

impl Value {
    /// Wraps a clonable value; copies are made with `Clone`.
    pub fn new<T: Data + Clone>(value: T) -> Self {
        Value(Arc::new(Holder {
            value: Mutex::new(value),
            copy: copy_by_clone::<T>,
        }))
    }

    /// Wraps a value that is not `Clone`; copies are made by a serde (bincode) round trip.
    pub fn from_data<T: Data>(value: T) -> Self {
        Value(Arc::new(Holder {
            value: Mutex::new(value),
            copy: copy_by_serde::<T>,
        }))
    }

    /// The stored type's `TypeId`.
    pub fn type_id(&self) -> TypeId {
        self.0.stored_type_id()
    }

    /// The stored type's name.
    pub fn type_name(&self) -> &'static str {
        self.0.stored_type_name()
    }

    /// Whether the stored value is a `T`.
    pub fn is<T: 'static>(&self) -> bool {
        self.type_id() == TypeId::of::<T>()
    }

    /// An owned copy of the value as a `T`; `what` names the value in errors
    /// ("the result of task 'x'", "channel key 'k'").
    pub(crate) fn copy_as<T: 'static>(&self, what: impl FnOnce() -> String) -> Result<T> {
        if !self.is::<T>() {
            return Err(Error::TypeMismatch {
                what: what(),
                expected: std::any::type_name::<T>(),
                found: self.type_name(),
            });
        }
        let mut slot: Option<T> = None;
        self.0
            .copy_into(&mut slot)
            .map_err(|message| Error::Codec {
                type_name: self.type_name(),
                message,
            })?;
        slot.ok_or_else(|| Error::Codec {
            type_name: self.type_name(),
            message: "the copy produced no value".to_owned(),
        })
    }

    /// An owned copy of the value as a `T`.
    pub fn get<T: 'static>(&self) -> Result<T> {
        self.copy_as(|| "this value".to_owned())
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
pub mod spec {
    use super::{Data, Value};
    use std::marker::PhantomData;

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
