//! Heap objects (Lists, Maps, Structs): element and field access under the object's lock,
//! with the undo of every change and the peered tags of what is stored.

use super::*;

impl Tx {
    // ---------------------------------------------------------------- heap objects

    /// Write-locks `obj` and runs `f` on its contents without marking anything dirty.
    pub(super) async fn with_obj_untracked<T>(
        &self,
        obj: &Obj,
        mut f: impl FnMut(&mut ObjData) -> T,
    ) -> Flow<T> {
        poll_fn(|cx| {
            let mut inner = obj.0.lock();
            match self.poll_grant(cx, &mut inner.lock, Mode::Write) {
                Poll::Ready(Ok(new)) => {
                    let out = f(&mut inner.data);
                    drop(inner);
                    if new {
                        self.hold(Held::Obj(obj.clone()));
                    }
                    Poll::Ready(Ok(out))
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Marks what was just stored into `container` as part of the same peered variables.
    fn tag_like(&self, container: &Obj, stored: &Value) {
        if matches!(stored, Value::List(_) | Value::Map(_) | Value::Struct(_)) {
            let tags = container.0.lock().peered.clone();
            crate::core::value::tag_value(stored, &tags);
        }
    }

    /// Runs `f` on the contents of `obj` with the lock taken in `mode`.
    pub(super) async fn with_obj<T>(
        &self,
        obj: &Obj,
        mode: Mode,
        mut f: impl FnMut(&mut ObjData) -> Flow<T>,
    ) -> Flow<T> {
        poll_fn(|cx| {
            let mut inner = obj.0.lock();
            match self.poll_grant(cx, &mut inner.lock, mode) {
                Poll::Ready(Ok(new)) => {
                    let tags = if mode == Mode::Write { inner.peered.clone() } else { Vec::new() };
                    // A container of a peered variable the other endpoint controls, reached
                    // through an alias or an argument: refused before anything changes.
                    let done = match tags.iter().find_map(|t| t.foreign) {
                        Some(foreign) => Err(foreign),
                        None => Ok(f(&mut inner.data)),
                    };
                    drop(inner);
                    if new {
                        self.hold(Held::Obj(obj.clone()));
                    }
                    match done {
                        Ok(out) => {
                            self.mark_dirty(&tags);
                            Poll::Ready(out)
                        }
                        Err(foreign) => Poll::Ready(foreign.refuse()),
                    }
                }
                Poll::Ready(Err(a)) => Poll::Ready(Err(a.into())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// The number of elements of a List or entries of a Map.
    pub async fn len(&self, obj: &Obj) -> Flow<usize> {
        self.with_obj(obj, Mode::Read, |d| {
            Ok(match d {
                ObjData::List(items) => items.len(),
                ObjData::Map(m) => m.len(),
                ObjData::Struct(f) => f.len(),
            })
        })
        .await
    }

    /// `list[index]`.
    pub async fn list_get(&self, obj: &Obj, index: f64) -> Flow<Value> {
        self.with_obj(obj, Mode::Read, |d| {
            let items = list(d)?;
            let i = list_index(index, items.len(), false)?;
            Ok(items[i].clone())
        })
        .await
    }

    /// `list[index] = value`.
    pub async fn list_set(&self, obj: &Obj, index: f64, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let old = self
            .with_obj(obj, Mode::Write, |d| {
                let items = list(d)?;
                let i = list_index(index, items.len(), false)?;
                Ok((i, std::mem::replace(&mut items[i], value.take().unwrap_or(Value::Nothing))))
            })
            .await?;
        self.log_undo(Undo::ListSet { obj: obj.clone(), index: old.0, old: old.1 });
        self.tag_like(obj, &stored);
        Ok(())
    }

    /// `list.append(value)`.
    pub async fn list_append(&self, obj: &Obj, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let index = self
            .with_obj(obj, Mode::Write, |d| {
                let items = list(d)?;
                items.push(value.take().unwrap_or(Value::Nothing));
                Ok(items.len() - 1)
            })
            .await?;
        self.log_undo(Undo::ListInserted { obj: obj.clone(), index });
        self.tag_like(obj, &stored);
        Ok(())
    }

    /// `list.insert(index, value)` (index may equal the length: append).
    pub async fn list_insert(&self, obj: &Obj, index: f64, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let index = self
            .with_obj(obj, Mode::Write, |d| {
                let items = list(d)?;
                let i = list_index(index, items.len(), true)?;
                items.insert(i, value.take().unwrap_or(Value::Nothing));
                Ok(i)
            })
            .await?;
        self.log_undo(Undo::ListInserted { obj: obj.clone(), index });
        self.tag_like(obj, &stored);
        Ok(())
    }

    /// `list.remove(index)`.
    pub async fn list_remove(&self, obj: &Obj, index: f64) -> Flow<()> {
        let (index, old) = self
            .with_obj(obj, Mode::Write, |d| {
                let items = list(d)?;
                let i = list_index(index, items.len(), false)?;
                Ok((i, items.remove(i)))
            })
            .await?;
        self.log_undo(Undo::ListRemoved { obj: obj.clone(), index, old });
        Ok(())
    }

    /// A copy of a List's elements (for iteration: later changes do not affect the loop).
    pub async fn list_items(&self, obj: &Obj) -> Flow<Vec<Value>> {
        self.with_obj(obj, Mode::Read, |d| Ok(list(d)?.clone())).await
    }

    /// `map[key]`; a missing key raises an ApplicationException.
    pub async fn map_get(&self, obj: &Obj, key: &Key) -> Flow<Value> {
        self.with_obj(obj, Mode::Read, |d| match map(d)?.get(key) {
            Some(v) => Ok(v.clone()),
            None => Err(Exception::application(format!("no key {} in the Map", show_key(key))).into()),
        })
        .await
    }

    /// `key in map`.
    pub async fn map_contains(&self, obj: &Obj, key: &Key) -> Flow<bool> {
        self.with_obj(obj, Mode::Read, |d| Ok(map(d)?.contains_key(key))).await
    }

    /// `map[key] = value`.
    pub async fn map_set(&self, obj: &Obj, key: Key, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let old = self
            .with_obj(obj, Mode::Write, |d| {
                Ok(map(d)?.insert(key.clone(), value.take().unwrap_or(Value::Nothing)))
            })
            .await?;
        self.log_undo(Undo::MapSet { obj: obj.clone(), key, old });
        self.tag_like(obj, &stored);
        Ok(())
    }

    /// `map.remove(key)`; a missing key raises an ApplicationException.
    pub async fn map_remove(&self, obj: &Obj, key: &Key) -> Flow<()> {
        let old = self
            .with_obj(obj, Mode::Write, |d| match map(d)?.remove(key) {
                Some(old) => Ok(old),
                None => Err(Exception::application(format!(
                    "cannot remove key {}: it is not in the Map",
                    show_key(key)
                ))
                .into()),
            })
            .await?;
        self.log_undo(Undo::MapSet { obj: obj.clone(), key: key.clone(), old: Some(old) });
        Ok(())
    }

    /// The keys of a Map, in ascending order.
    pub async fn map_keys(&self, obj: &Obj) -> Flow<Vec<Key>> {
        self.with_obj(obj, Mode::Read, |d| Ok(map(d)?.keys().cloned().collect())).await
    }

    /// Field `field` of a Struct.
    pub async fn field_get(&self, obj: &Obj, field: usize) -> Flow<Value> {
        self.with_obj(obj, Mode::Read, |d| match d {
            ObjData::Struct(fields) => {
                fields.get(field).cloned().ok_or_else(|| Exception::application("no such field").into())
            }
            _ => Err(Exception::application("not a Struct").into()),
        })
        .await
    }

    /// Sets field `field` of a Struct.
    pub async fn field_set(&self, obj: &Obj, field: usize, value: Value) -> Flow<()> {
        let stored = value.clone();
        let mut value = Some(value);
        let old = self
            .with_obj(obj, Mode::Write, |d| match d {
                ObjData::Struct(fields) => match fields.get_mut(field) {
                    Some(slot) => Ok(std::mem::replace(slot, value.take().unwrap_or(Value::Nothing))),
                    None => Err(Exception::application("no such field").into()),
                },
                _ => Err(Exception::application("not a Struct").into()),
            })
            .await?;
        self.log_undo(Undo::StructSet { obj: obj.clone(), field, old });
        self.tag_like(obj, &stored);
        Ok(())
    }
}

fn list(d: &mut ObjData) -> Flow<&mut Vec<Value>> {
    match d {
        ObjData::List(items) => Ok(items),
        _ => Err(Exception::application("not a List").into()),
    }
}

fn map(d: &mut ObjData) -> Flow<&mut std::collections::BTreeMap<Key, Value>> {
    match d {
        ObjData::Map(m) => Ok(m),
        _ => Err(Exception::application("not a Map").into()),
    }
}

/// Checks a List index: a whole number in range (`len` itself allowed when inserting).
fn list_index(index: f64, len: usize, inserting: bool) -> Flow<usize> {
    let limit = if inserting { len } else { len.saturating_sub(1) };
    if index.fract() != 0.0 || !index.is_finite() {
        return Err(Exception::application(format!("List index {index} is not a whole number")).into());
    }
    if index < 0.0 || index > limit as f64 || (!inserting && len == 0) {
        return Err(Exception::application(format!(
            "List index {} is out of range for a List of {len} element{}",
            crate::core::value::number_to_text(index),
            if len == 1 { "" } else { "s" }
        ))
        .into());
    }
    Ok(index as usize)
}

fn show_key(key: &Key) -> String {
    match key {
        Key::Number(n) => crate::core::value::number_to_text(*n),
        Key::Text(t) => format!("'{t}'"),
        Key::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
    }
}
