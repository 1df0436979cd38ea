//! Deep copies (sharing and cycles kept) and deep equality, read under the locks of what
//! they visit.

use super::*;

impl Tx {
    // ---------------------------------------------------------------- copies and equality

    /// A deep copy of `value` that shares nothing with it (sharing and cycles inside the
    /// value are kept). Used wherever a value crosses a boundary. Objects are read under
    /// this transaction's locks.
    pub async fn deep_copy(&self, value: &Value) -> Flow<Value> {
        let mut copies: HashMap<usize, Obj> = HashMap::new();
        let mut todo: Vec<(Obj, Obj)> = Vec::new();
        let root = self.copy_shallow(value, &mut copies, &mut todo);
        while let Some((source, target)) = todo.pop() {
            let data = self.with_obj(&source, Mode::Read, |d| Ok(d.clone())).await?;
            let copied = match data {
                ObjData::List(items) => ObjData::List(
                    items.iter().map(|v| self.copy_shallow(v, &mut copies, &mut todo)).collect(),
                ),
                ObjData::Map(m) => ObjData::Map(
                    m.iter()
                        .map(|(k, v)| (k.clone(), self.copy_shallow(v, &mut copies, &mut todo)))
                        .collect(),
                ),
                ObjData::Struct(fields) => ObjData::Struct(
                    fields.iter().map(|v| self.copy_shallow(v, &mut copies, &mut todo)).collect(),
                ),
            };
            target.0.lock().data = copied;
        }
        Ok(root)
    }

    fn copy_shallow(
        &self,
        value: &Value,
        copies: &mut HashMap<usize, Obj>,
        todo: &mut Vec<(Obj, Obj)>,
    ) -> Value {
        let mut obj = |o: &Obj, empty: ObjData| -> Obj {
            copies
                .entry(o.addr())
                .or_insert_with(|| {
                    let fresh = Obj::new(empty);
                    todo.push((o.clone(), fresh.clone()));
                    fresh
                })
                .clone()
        };
        match value {
            Value::List(o) => Value::List(obj(o, ObjData::List(Vec::new()))),
            Value::Map(o) => Value::Map(obj(o, ObjData::Map(Default::default()))),
            Value::Struct(o) => Value::Struct(obj(o, ObjData::Struct(Vec::new()))),
            other => other.clone(),
        }
    }

    /// Deep equality (`==`): containers and structs by contents, Externals by the values of
    /// their cells, Endpoints by identity.
    pub async fn equals(&self, a: &Value, b: &Value) -> Flow<bool> {
        let mut pending = vec![(a.clone(), b.clone())];
        // The pairs of objects being compared: a pair met again (through a cycle, or shared)
        // is equal so far, and the other paths decide.
        let mut compared: std::collections::HashSet<(usize, usize)> = std::collections::HashSet::new();
        while let Some((a, b)) = pending.pop() {
            let same = match (&a, &b) {
                (Value::Nothing, Value::Nothing) => true,
                (Value::Number(x), Value::Number(y)) => x == y,
                (Value::Text(x), Value::Text(y)) => x == y,
                (Value::Bool(x), Value::Bool(y)) => x == y,
                (Value::Endpoint(x), Value::Endpoint(y)) => x.id() == y.id(),
                (Value::Function(x), Value::Function(y)) => Arc::ptr_eq(&x.0, &y.0),
                // Externals compare by the values their cells hold.
                (Value::External(x), Value::External(y)) => {
                    x.same(y) || {
                        let (vx, vy) = (self.ext_read(x).await?, self.ext_read(y).await?);
                        pending.push((vx, vy));
                        true
                    }
                }
                (Value::External(x), other) | (other, Value::External(x)) => {
                    let vx = self.ext_read(x).await?;
                    pending.push((vx, other.clone()));
                    true
                }
                (Value::List(x), Value::List(y))
                | (Value::Map(x), Value::Map(y))
                | (Value::Struct(x), Value::Struct(y)) => {
                    if x.same(y) || !compared.insert((x.addr(), y.addr())) {
                        true
                    } else {
                        let dx = self.with_obj(x, Mode::Read, |d| Ok(d.clone())).await?;
                        let dy = self.with_obj(y, Mode::Read, |d| Ok(d.clone())).await?;
                        match (dx, dy) {
                            (ObjData::List(p), ObjData::List(q))
                            | (ObjData::Struct(p), ObjData::Struct(q)) => {
                                p.len() == q.len() && {
                                    pending.extend(p.into_iter().zip(q));
                                    true
                                }
                            }
                            (ObjData::Map(p), ObjData::Map(q)) => {
                                p.len() == q.len() && p.keys().zip(q.keys()).all(|(k, l)| k == l) && {
                                    pending.extend(p.into_values().zip(q.into_values()));
                                    true
                                }
                            }
                            _ => false,
                        }
                    }
                }
                _ => false,
            };
            if !same {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
