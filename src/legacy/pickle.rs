//! A data-only reader of Python pickles, for the original epygibus's
//! snapshots and reference counts. It never runs code: classes are only
//! *named* (and the name must be on the caller's list), `REDUCE` is
//! accepted only for the few built-in reconstructors the pickle protocol
//! uses for plain data, and persistent ids and extension codes are refused.
//!
//! Why not `serde-pickle`: its `Value` cannot hold class instances (it
//! drops the class name, so unexpected classes cannot be refused) nor the
//! back-references of the original's trees, and it rejects the strings
//! Python writes for non-UTF-8 file names (`surrogateescape`), which the
//! fixtures hold. Values live in an arena addressed by [`Id`], so memo
//! references and cycles (a directory naming its parent) need no copies.

use std::collections::HashMap;

use super::pystr::{decode_str, quoted_bytes, raw_unicode_escape};

/// Index of a value in [`Pickle::values`].
pub type Id = usize;

/// One Python value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A `str`, as the bytes it stands for: UTF-8, except that the lone
    /// surrogates U+DC80..U+DCFF Python uses for undecodable file-name
    /// bytes (`surrogateescape`) are those bytes again.
    Str(Vec<u8>),
    /// `bytes`, `bytearray`, or a Python 2 `str`.
    Bytes(Vec<u8>),
    Tuple(Vec<Id>),
    List(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    Set(Vec<Id>),
    /// A class or function named by module and name (never imported).
    Global {
        module: String,
        name: String,
    },
    /// An instance of the class `class` (a [`Value::Global`]), made from
    /// `args`, with the state `BUILD` gave it (usually its `__dict__`).
    Object {
        class: Id,
        args: Vec<Id>,
        state: Option<Id>,
    },
}

/// Why a pickle cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    #[error("it ends early (truncated at byte {0})")]
    Truncated(usize),
    #[error(
        "it holds the class or function `{module}.{name}`, which no data of the original epygibus uses; it was not loaded"
    )]
    UnexpectedGlobal { module: String, name: String },
    #[error("opcode 0x{op:02x} at byte {at} is not a data opcode this reader accepts")]
    Unsupported { op: u8, at: usize },
    #[error("it is malformed at byte {at}: {what}")]
    Malformed { at: usize, what: String },
}

type Result<T, E = PickleError> = std::result::Result<T, E>;

/// A decoded pickle: every value, and which one `STOP` returned.
#[derive(Debug, Clone)]
pub struct Pickle {
    pub values: Vec<Value>,
    pub root: Id,
}

impl Pickle {
    pub fn get(&self, id: Id) -> &Value {
        &self.values[id]
    }
}

enum Slot {
    Mark,
    Val(Id),
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    at: usize,
    stack: Vec<Slot>,
    values: Vec<Value>,
    memo: HashMap<u64, Id>,
    allowed: &'a dyn Fn(&str, &str) -> bool,
}

/// Reads a whole pickle. `allowed(module, name)` says which classes may be
/// named; a pickle naming any other is refused.
pub fn read(data: &[u8], allowed: &dyn Fn(&str, &str) -> bool) -> Result<Pickle> {
    let mut r = Reader {
        data,
        pos: 0,
        at: 0,
        stack: Vec::new(),
        values: Vec::new(),
        memo: HashMap::new(),
        allowed,
    };
    let root = r.run()?;
    Ok(Pickle {
        values: r.values,
        root,
    })
}

/// Python's reconstructors for plain data: `copyreg._reconstructor(cls,
/// object, None)` (protocol 0/1 instances), `set`/`frozenset` (protocol
/// ≤ 3 sets) and `_codecs.encode(text, "latin1")` (Python 3 bytes in
/// protocol ≤ 2). Calling them builds data, never runs the class's code.
fn is_builtin(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        ("copyreg" | "copy_reg", "_reconstructor")
            | ("builtins" | "__builtin__", "object" | "set" | "frozenset")
            | ("_codecs", "encode")
    )
}

impl Reader<'_> {
    fn malformed<T>(&self, what: impl Into<String>) -> Result<T> {
        Err(PickleError::Malformed {
            at: self.at,
            what: what.into(),
        })
    }

    fn take(&mut self, n: u64) -> Result<&[u8]> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return Err(PickleError::Truncated(self.data.len()));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    fn byte(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn uint(&mut self, n: u64) -> Result<u64> {
        let b = self.take(n)?;
        Ok(b.iter()
            .rev()
            .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)))
    }

    fn line(&mut self) -> Result<&[u8]> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PickleError::Truncated(self.data.len()));
        };
        self.pos += end + 1;
        Ok(&rest[..end])
    }

    fn line_str(&mut self) -> Result<String> {
        let line = self.line()?.to_vec();
        match String::from_utf8(line) {
            Ok(s) => Ok(s.trim_end_matches('\r').to_owned()),
            Err(_) => self.malformed("a text argument is not ASCII"),
        }
    }

    fn new_value(&mut self, v: Value) -> Id {
        self.values.push(v);
        self.values.len() - 1
    }

    fn push(&mut self, v: Value) {
        let id = self.new_value(v);
        self.stack.push(Slot::Val(id));
    }

    fn pop(&mut self) -> Result<Id> {
        match self.stack.pop() {
            Some(Slot::Val(id)) => Ok(id),
            Some(Slot::Mark) => self.malformed("a mark where a value was expected"),
            None => self.malformed("the stack is empty"),
        }
    }

    fn top(&self) -> Result<Id> {
        match self.stack.last() {
            Some(Slot::Val(id)) => Ok(*id),
            _ => self.malformed("no value on the stack"),
        }
    }

    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return self.malformed("no mark on the stack");
        };
        let items = self
            .stack
            .drain(mark + 1..)
            .map(|s| match s {
                Slot::Val(id) => id,
                Slot::Mark => unreachable!("the last mark is at `mark`"),
            })
            .collect();
        self.stack.pop();
        Ok(items)
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let id = self.top()?;
        self.memo.insert(key, id);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        match self.memo.get(&key) {
            Some(&id) => {
                self.stack.push(Slot::Val(id));
                Ok(())
            }
            None => self.malformed(format!("memo entry {key} was never stored")),
        }
    }

    fn global(&mut self, module: String, name: String) -> Result<()> {
        if !is_builtin(&module, &name) && !(self.allowed)(&module, &name) {
            return Err(PickleError::UnexpectedGlobal { module, name });
        }
        self.push(Value::Global { module, name });
        Ok(())
    }

    fn global_name(&self, id: Id) -> Option<(&str, &str)> {
        match &self.values[id] {
            Value::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }

    fn text(&self, id: Id) -> Result<String> {
        match &self.values[id] {
            Value::Str(b) => match std::str::from_utf8(b) {
                Ok(s) => Ok(s.to_owned()),
                Err(_) => self.malformed("a class name is not text"),
            },
            _ => self.malformed("a class name is not a string"),
        }
    }

    fn instance(&mut self, class: Id, args: Vec<Id>) -> Result<()> {
        match self.global_name(class) {
            Some((m, n)) if !is_builtin(m, n) => {
                self.push(Value::Object {
                    class,
                    args,
                    state: None,
                });
                Ok(())
            }
            _ => self.malformed("an instance of something that is not an allowed class"),
        }
    }

    fn reduce(&mut self) -> Result<()> {
        let args = self.pop()?;
        let func = self.pop()?;
        let Value::Tuple(args) = self.values[args].clone() else {
            return self.malformed("REDUCE arguments are not a tuple");
        };
        let Some((module, name)) = self.global_name(func) else {
            return self.malformed("REDUCE of something that is not a named function");
        };
        match (module, name, args.as_slice()) {
            ("copyreg" | "copy_reg", "_reconstructor", [class, base, _state]) => {
                let plain_object = self.global_name(*base) == Some(("builtins", "object"))
                    || self.global_name(*base) == Some(("__builtin__", "object"));
                if !plain_object {
                    return self.malformed("a reconstructed instance of a built-in type");
                }
                self.instance(*class, Vec::new())
            }
            ("builtins" | "__builtin__", "set" | "frozenset", [items]) => {
                match self.values[*items].clone() {
                    Value::List(v) | Value::Tuple(v) | Value::Set(v) => {
                        self.push(Value::Set(v));
                        Ok(())
                    }
                    _ => self.malformed("a set made from something that is not a list"),
                }
            }
            ("builtins" | "__builtin__", "set" | "frozenset", []) => {
                self.push(Value::Set(Vec::new()));
                Ok(())
            }
            ("_codecs", "encode", [text, _encoding]) => match &self.values[*text] {
                // Python 3 writes bytes as their latin-1 decoding: each
                // code point below 256 is one byte.
                Value::Str(b) => {
                    let s = String::from_utf8_lossy(b).into_owned();
                    let mut bytes = Vec::with_capacity(s.len());
                    for c in s.chars() {
                        match u8::try_from(u32::from(c)) {
                            Ok(b) => bytes.push(b),
                            Err(_) => return self.malformed("bytes outside latin-1"),
                        }
                    }
                    self.push(Value::Bytes(bytes));
                    Ok(())
                }
                _ => self.malformed("_codecs.encode of something that is not text"),
            },
            _ => self.malformed(format!("REDUCE of `{module}.{name}` with these arguments")),
        }
    }

    fn build(&mut self) -> Result<()> {
        let state = self.pop()?;
        let obj = self.top()?;
        match &mut self.values[obj] {
            Value::Object {
                state: s @ None, ..
            } => {
                *s = Some(state);
                Ok(())
            }
            _ => self.malformed("BUILD of something that is not a fresh instance"),
        }
    }

    fn add_to_dict(&mut self, dict: Id, items: &[Id]) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return self.malformed("a dictionary item without a value");
        }
        let pairs: Vec<(Id, Id)> = items.chunks(2).map(|p| (p[0], p[1])).collect();
        match &mut self.values[dict] {
            Value::Dict(d) => {
                d.extend(pairs);
                Ok(())
            }
            _ => self.malformed("SETITEM on something that is not a dictionary"),
        }
    }

    fn add_to_list(&mut self, list: Id, items: Vec<Id>) -> Result<()> {
        match &mut self.values[list] {
            Value::List(l) | Value::Set(l) => {
                l.extend(items);
                Ok(())
            }
            _ => self.malformed("APPEND on something that is not a list"),
        }
    }

    fn text_int(&mut self) -> Result<Value> {
        let line = self.line_str()?;
        let digits = line.trim_end_matches('L');
        match digits {
            "00" => return Ok(Value::Bool(false)),
            "01" => return Ok(Value::Bool(true)),
            _ => {}
        }
        match digits.parse::<i64>() {
            Ok(n) => Ok(Value::Int(n)),
            Err(_) => self.malformed(format!("`{line}` is not an integer this reader handles")),
        }
    }

    /// LONG1/LONG4: little-endian two's complement of up to 8 bytes.
    fn long(&mut self, len_bytes: u64) -> Result<Value> {
        let n = self.uint(len_bytes)?;
        if n > 8 {
            return self.malformed("an integer larger than 64 bits");
        }
        let b = self.take(n)?;
        if b.is_empty() {
            return Ok(Value::Int(0));
        }
        let negative = b[b.len() - 1] & 0x80 != 0;
        let mut buf = [if negative { 0xff } else { 0 }; 8];
        buf[..b.len()].copy_from_slice(b);
        Ok(Value::Int(i64::from_le_bytes(buf)))
    }

    fn unicode(&mut self, len_bytes: u64) -> Result<Value> {
        let n = self.uint(len_bytes)?;
        let raw = self.take(n)?.to_vec();
        match decode_str(&raw) {
            Some(bytes) => Ok(Value::Str(bytes)),
            None => self.malformed("a string that is not valid UTF-8"),
        }
    }

    fn sized_bytes(&mut self, len_bytes: u64) -> Result<Value> {
        let n = self.uint(len_bytes)?;
        Ok(Value::Bytes(self.take(n)?.to_vec()))
    }

    fn run(&mut self) -> Result<Id> {
        loop {
            self.at = self.pos;
            let op = self.byte()?;
            match op {
                b'.' => return self.pop(),
                0x80 => {
                    if self.byte()? > 5 {
                        return self.malformed("a pickle protocol newer than 5");
                    }
                }
                0x95 => {
                    self.uint(8)?;
                }
                b'(' => self.stack.push(Slot::Mark),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let id = self.top()?;
                    self.stack.push(Slot::Val(id));
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'I' | b'L' => {
                    let v = self.text_int()?;
                    self.push(v);
                }
                b'J' => {
                    let n = self.uint(4)? as u32 as i32;
                    self.push(Value::Int(n.into()));
                }
                b'K' => {
                    let n = self.uint(1)?;
                    self.push(Value::Int(n as i64));
                }
                b'M' => {
                    let n = self.uint(2)?;
                    self.push(Value::Int(n as i64));
                }
                0x8a => {
                    let v = self.long(1)?;
                    self.push(v);
                }
                0x8b => {
                    let v = self.long(4)?;
                    self.push(v);
                }
                b'F' => {
                    let line = self.line_str()?;
                    match line.parse::<f64>() {
                        Ok(f) => self.push(Value::Float(f)),
                        Err(_) => return self.malformed("a float that does not parse"),
                    }
                }
                b'G' => {
                    let b = self.take(8)?;
                    let f = f64::from_be_bytes(b.try_into().expect("8 bytes"));
                    self.push(Value::Float(f));
                }
                b'X' => {
                    let v = self.unicode(4)?;
                    self.push(v);
                }
                0x8c => {
                    let v = self.unicode(1)?;
                    self.push(v);
                }
                0x8d => {
                    let v = self.unicode(8)?;
                    self.push(v);
                }
                b'V' => {
                    let line = self.line()?.to_vec();
                    match raw_unicode_escape(&line) {
                        Some(bytes) => self.push(Value::Str(bytes)),
                        None => return self.malformed("a text string that does not decode"),
                    }
                }
                b'S' => {
                    let line = self.line()?.to_vec();
                    match quoted_bytes(&line) {
                        Some(bytes) => self.push(Value::Bytes(bytes)),
                        None => return self.malformed("a quoted string that does not decode"),
                    }
                }
                b'T' | b'B' => {
                    let v = self.sized_bytes(4)?;
                    self.push(v);
                }
                b'U' | b'C' => {
                    let v = self.sized_bytes(1)?;
                    self.push(v);
                }
                0x8e | 0x96 => {
                    let v = self.sized_bytes(8)?;
                    self.push(v);
                }
                b')' => self.push(Value::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return self.malformed("too few values for a tuple");
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items));
                }
                b']' => self.push(Value::List(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items));
                }
                b'a' => {
                    let item = self.pop()?;
                    let list = self.top()?;
                    self.add_to_list(list, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.add_to_list(list, items)?;
                }
                b'}' => self.push(Value::Dict(Vec::new())),
                b'd' => {
                    let items = self.pop_mark()?;
                    let dict = self.new_value(Value::Dict(Vec::new()));
                    self.add_to_dict(dict, &items)?;
                    self.stack.push(Slot::Val(dict));
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    let dict = self.top()?;
                    self.add_to_dict(dict, &[key, value])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.add_to_dict(dict, &items)?;
                }
                0x8f => self.push(Value::Set(Vec::new())),
                0x90 => {
                    let items = self.pop_mark()?;
                    let set = self.top()?;
                    self.add_to_list(set, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Value::Set(items));
                }
                b'p' => {
                    let key = self.line_str()?;
                    match key.parse() {
                        Ok(k) => self.memo_put(k)?,
                        Err(_) => return self.malformed("a memo key that is not a number"),
                    }
                }
                b'q' => {
                    let k = self.uint(1)?;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.uint(4)?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'g' => {
                    let key = self.line_str()?;
                    match key.parse() {
                        Ok(k) => self.memo_get(k)?,
                        Err(_) => return self.malformed("a memo key that is not a number"),
                    }
                }
                b'h' => {
                    let k = self.uint(1)?;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.uint(4)?;
                    self.memo_get(k)?;
                }
                b'c' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (module, name) = (self.text(module)?, self.text(name)?);
                    self.global(module, name)?;
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let Value::Tuple(args) = self.values[args].clone() else {
                        return self.malformed("NEWOBJ arguments are not a tuple");
                    };
                    self.instance(class, args)?;
                }
                b'o' => {
                    let mut items = self.pop_mark()?;
                    if items.is_empty() {
                        return self.malformed("OBJ without a class");
                    }
                    let class = items.remove(0);
                    self.instance(class, items)?;
                }
                b'i' => {
                    let module = self.line_str()?;
                    let name = self.line_str()?;
                    let args = self.pop_mark()?;
                    self.global(module, name)?;
                    let class = self.pop()?;
                    self.instance(class, args)?;
                }
                b'R' => self.reduce()?,
                b'b' => self.build()?,
                _ => {
                    return Err(PickleError::Unsupported { op, at: self.at });
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "pickle_tests.rs"]
pub(super) mod tests;
