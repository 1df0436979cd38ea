//! The shapes of the values a partner may send: its peered variables and the sequence data
//! its messages carry, as the protocol declares them. A connection checks every value it
//! receives against them before anything uses it, so that a peer that sends a Text for a
//! Number (a bug, or a hostile peer with the right fingerprint) is refused with a protocol
//! deviation instead of leaving a replica holding a value of the wrong type.
//!
//! The generated code writes the shapes as statics (`rt::Shape::List(&rt::Shape::Number)`);
//! a struct's shape is a static of its own, which a recursive struct refers to by address.

use std::collections::HashSet;

use crate::core::value::{Key, ObjData, Value};

/// The shape of a value of one Waldo type (the types that shared data may hold).
#[derive(Debug)]
pub enum Shape {
    /// `Number`.
    Number,
    /// `Text`.
    Text,
    /// `TrueFalse`.
    TrueFalse,
    /// `List(element: T)`.
    List(&'static Shape),
    /// `Map(from: K, to: V)`: the key's shape (Number, Text or TrueFalse) and the value's.
    Map(&'static Shape, &'static Shape),
    /// `Struct S`: its fields' shapes, in order.
    Struct(&'static [&'static Shape]),
}

impl Shape {
    /// The type's name, for messages.
    fn name(&self) -> &'static str {
        match self {
            Shape::Number => "a Number",
            Shape::Text => "a Text",
            Shape::TrueFalse => "a TrueFalse",
            Shape::List(_) => "a List",
            Shape::Map(..) => "a Map",
            Shape::Struct(_) => "a Struct",
        }
    }

    /// Checks that `value` has this shape, all the way down; the error says what was found
    /// where the shape wanted something else. Each object is looked at once, so shared and
    /// cyclic values end.
    pub fn check(&'static self, value: &Value) -> Result<(), String> {
        // Most values are plain: no allocation for them.
        match (self, value) {
            (Shape::Number, Value::Number(_))
            | (Shape::Text, Value::Text(_))
            | (Shape::TrueFalse, Value::Bool(_)) => {
                return Ok(());
            }
            (Shape::Number | Shape::Text | Shape::TrueFalse, other) => {
                return Err(format!("{} where {} was expected", other.kind_name(), self.name()));
            }
            _ => {}
        }
        let mut seen: HashSet<usize> = HashSet::new();
        let mut todo: Vec<(&'static Shape, Value)> = vec![(self, value.clone())];
        while let Some((shape, value)) = todo.pop() {
            let fits = match (shape, &value) {
                (Shape::Number, Value::Number(_))
                | (Shape::Text, Value::Text(_))
                | (Shape::TrueFalse, Value::Bool(_)) => true,
                (Shape::List(_), Value::List(o))
                | (Shape::Map(..), Value::Map(o))
                | (Shape::Struct(_), Value::Struct(o)) => {
                    if !seen.insert(o.addr()) {
                        continue;
                    }
                    let inner = o.0.lock();
                    match (shape, &inner.data) {
                        (Shape::List(element), ObjData::List(items)) => {
                            todo.extend(items.iter().map(|v| (*element, v.clone())));
                            true
                        }
                        (Shape::Map(key, element), ObjData::Map(entries)) => {
                            for (k, v) in entries {
                                let key_fits = matches!(
                                    (key, k),
                                    (Shape::Number, Key::Number(_))
                                        | (Shape::Text, Key::Text(_))
                                        | (Shape::TrueFalse, Key::Bool(_))
                                );
                                if !key_fits {
                                    return Err(format!(
                                        "a Map key {} where {} was expected",
                                        k.to_value().kind_name(),
                                        key.name()
                                    ));
                                }
                                todo.push((*element, v.clone()));
                            }
                            true
                        }
                        (Shape::Struct(fields), ObjData::Struct(values)) => {
                            if values.len() != fields.len() {
                                return Err(format!(
                                    "a Struct of {} fields where one of {} was expected",
                                    values.len(),
                                    fields.len()
                                ));
                            }
                            todo.extend(fields.iter().zip(values).map(|(f, v)| (*f, v.clone())));
                            true
                        }
                        _ => false,
                    }
                }
                _ => false,
            };
            if !fits {
                return Err(format!("{} where {} was expected", value.kind_name(), shape.name()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::Shape;
    use crate::core::value::{Key, Value};

    static NUMBERS: Shape = Shape::List(&Shape::Number);
    static INDEX: Shape = Shape::Map(&Shape::Text, &Shape::Number);
    /// `Struct Node { Number v; List(element: Struct Node) kids; }`
    static NODE: Shape = Shape::Struct(&[&Shape::Number, &KIDS]);
    static KIDS: Shape = Shape::List(&NODE);

    #[test]
    fn values_of_the_declared_type_pass_and_others_say_what_they_are() {
        assert_eq!(Shape::Number.check(&Value::Number(1.0)), Ok(()));
        let err = Shape::Number.check(&Value::text("one")).expect_err("a Text is no Number");
        assert!(err.contains("a Text where a Number was expected"), "{err}");
        let list = Value::new_list(vec![Value::Number(1.0), Value::text("two")]);
        let err = NUMBERS.check(&list).expect_err("an element of the wrong type");
        assert!(err.contains("a Text where a Number"), "{err}");
        let map = Value::new_map(BTreeMap::from([(Key::number(1.0), Value::Number(1.0))]));
        let err = INDEX.check(&map).expect_err("a key of the wrong type");
        assert!(err.contains("Map key"), "{err}");
        let short = Value::new_struct(vec![Value::Number(1.0)]);
        assert!(NODE.check(&short).expect_err("one field missing").contains("1 fields"));
    }

    #[test]
    fn cyclic_values_end() {
        let kids = Value::new_list(Vec::new());
        let node = Value::new_struct(vec![Value::Number(0.0), kids.clone()]);
        if let Value::List(o) = &kids {
            o.0.lock().data = crate::core::value::ObjData::List(vec![node.clone()]);
        }
        assert_eq!(NODE.check(&node), Ok(()));
    }
}
