//! Lua scripts (EVAL and its kin), run where their log entry is applied, or where a read-only
//! one is executed as a read.
//!
//! Every node runs the script of a log entry, so a run must come out the same everywhere:
//! - each run gets a new Lua state: nothing a script leaves behind reaches the next one, on any
//!   node (and a node restored from a snapshot has nothing to miss);
//! - `math.random` follows a seed drawn from the entry, and so do the commands that pick at
//!   random (SPOP, SRANDMEMBER, RANDOMKEY ...) when a script calls them; TIME is the entry's
//!   clock;
//! - a script is stopped after the instruction budget its entry carries (counted, not timed:
//!   every replica stops it at the same instruction) or when it allocates more than
//!   [`MEMORY_LIMIT`]. What it wrote before an error stays written, as in Redis.
//!
//! What scripts see is Redis 7.0's scripting environment: `KEYS`, `ARGV`, the `redis` library
//! (`call`, `pcall`, `error_reply`, `status_reply`, `sha1hex`, `log` ...), `bit`, `cjson`,
//! read-only globals, and the same replies and error messages. Replies convert as RESP2 does.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use mlua::{
    HookTriggers, LightUserData, Lua, LuaOptions, MultiValue, StdLib, Table, Value as LuaValue, VmState,
};
use sha1::{Digest, Sha1};

use super::zsets::format_g;
use crate::command::scripting::NO_SCRIPT;
use crate::command::{lookup, parse_i64, Command, Eval, LocalCommand, ReadQuery, Script, WriteOp};
use crate::error::{Error, Result};
use crate::resp::{double_text, Frame};

/// The most memory a script's Lua state may hold.
pub const MEMORY_LIMIT: usize = 256 << 20;
/// A script's instruction budget when its entry carries none: a few tenths of a second of
/// Lua. A script runs inside the apply of its entry, which holds up the node's log writes, so
/// a script much longer than this would cost the cluster its leader (an election timeout is
/// 1 to 2 s).
pub const DEFAULT_BUDGET: u64 = 100_000_000;
/// What a command run by a script counts against its budget, in instructions.
const CALL_COST: u64 = 2_000;
/// How often (in Lua instructions) the budget is checked.
const BUDGET_STEP: u32 = 1000;
/// The Redis version scripts see (`redis.REDIS_VERSION`), the one raft-kv answers as.
const REDIS_VERSION: &str = "7.0.15";
/// How deeply nested a table a script may return.
const MAX_REPLY_DEPTH: usize = 1000;

/// What a script's `redis.call` reaches: the keyspace as the entry being applied sees it, or
/// as a read does.
pub trait ScriptHost {
    /// Executes a read.
    fn read(&mut self, query: &ReadQuery) -> Result<Frame>;
    /// Applies a write; `None` where scripts may only read (EVAL_RO).
    fn write(&mut self, op: WriteOp) -> Option<Result<Frame>>;
}

/// The lowercase hex SHA-1 digest of a script: its name for EVALSHA.
pub fn sha1_hex(data: &[u8]) -> String {
    Sha1::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// The seed of a script's random choices: drawn from the log entry that runs it (`index`, its
/// clock, the script), the same on every replica; for a read (`index` 0), which changes
/// nothing, the same for the same script within a millisecond, as nothing needs more.
pub fn seed(index: u64, now_ms: i64, eval: &Eval) -> u64 {
    let script = match &eval.script {
        Script::Body(body) => xxhash_rust::xxh3::xxh3_64(body),
        Script::Sha(_) => 0,
    };
    index.rotate_left(17) ^ now_ms as u64 ^ script
}

/// Runs `eval` against `host` at time `now_ms` (unix ms), its random choices following `seed`:
/// the script's reply. `Err` only when the keyspace fails under it.
pub fn run(eval: &Eval, host: &mut dyn ScriptHost, now_ms: i64, seed: u64) -> Result<Frame> {
    let Script::Body(body) = &eval.script else {
        return Ok(Frame::error(NO_SCRIPT));
    };
    let budget = if eval.budget == 0 { DEFAULT_BUDGET } else { eval.budget };
    let failure = RefCell::new(None);
    let outcome = run_lua(body, eval, host, now_ms, seed, budget, &failure);
    if let Some(error) = failure.into_inner() {
        return Err(error);
    }
    Ok(outcome.unwrap_or_else(|e| Frame::error(format!("ERR {}", one_line(&e.to_string())))))
}

fn run_lua(
    body: &Bytes,
    eval: &Eval,
    host: &mut dyn ScriptHost,
    now_ms: i64,
    seed: u64,
    budget: u64,
    failure: &RefCell<Option<Error>>,
) -> mlua::Result<Frame> {
    // (Lua 5.1's base library holds `coroutine`.)
    let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::DEBUG;
    // SAFETY: `unsafe_new_with` is needed for the `debug` library, which only the prelude's
    // error handler keeps (it finds the line an error comes from, as Redis's does); the prelude
    // removes it from the globals before the script runs, no C module can be loaded (no
    // `package` library) and the prelude refuses to load bytecode.
    let lua = unsafe { Lua::unsafe_new_with(libs, LuaOptions::default()) };
    lua.set_memory_limit(MEMORY_LIMIT)?;
    let exhausted = Rc::new(Cell::new(false));
    let spent = Rc::new(Cell::new(0u64));
    let (flag, counted) = (exhausted.clone(), spent.clone());
    lua.set_global_hook(HookTriggers::new().every_nth_instruction(BUDGET_STEP), move |_, _| {
        counted.set(counted.get() + BUDGET_STEP as u64);
        if counted.get() > budget {
            flag.set(true);
            return Err(mlua::Error::runtime("the script ran out of its instruction budget"));
        }
        Ok(VmState::Continue)
    })?;
    install_libraries(&lua, seed)?;
    let globals = lua.globals();
    for (name, items) in [("KEYS", &eval.keys), ("ARGV", &eval.args)] {
        let strings = items.iter().map(|item| lua.create_string(item)).collect::<mlua::Result<Vec<_>>>()?;
        globals.raw_set(name, lua.create_sequence_from(strings)?)?;
    }
    // Its name in error replies (hashed only for one).
    let sha = || sha1_hex(body);
    let function = match lua
        .load(&body[..])
        .set_name("@user_script")
        .set_mode(mlua::chunk::ChunkMode::Text)
        .into_function()
    {
        Ok(function) => function,
        Err(mlua::Error::SyntaxError { message, .. }) => {
            return Ok(Frame::error(format!(
                "ERR Error compiling script (new function): {}",
                one_line(&message)
            )));
        }
        Err(e) => return Err(e),
    };
    let mut seeds = seed;
    let (ok, value): (bool, LuaValue) = lua.scope(|scope| {
        let call = scope.create_function_mut(|lua, args: MultiValue| {
            let Some(argv) = command_args(lua, args)? else {
                return error_table(lua, "ERR Lua redis lib command arguments must be strings or integers");
            };
            if argv.is_empty() {
                return error_table(lua, "ERR Please specify at least one argument for this redis lib call");
            }
            seeds = next_seed(seeds);
            spent.set(spent.get() + CALL_COST);
            match dispatch(argv, host, now_ms, seeds) {
                Ok(frame) => to_lua(lua, frame),
                Err(e) => {
                    *failure.borrow_mut() = Some(e);
                    Err(mlua::Error::runtime("the keyspace failed under the script"))
                }
            }
        })?;
        let sha1hex = lua.create_function(|_, data: mlua::LuaString| Ok(sha1_hex(&data.as_bytes())))?;
        let log = lua.create_function(|_, (level, message): (i64, mlua::LuaString)| {
            let message = String::from_utf8_lossy(&message.as_bytes()).into_owned();
            match level {
                3 => tracing::warn!(target: "raft_kv::script", "{message}"),
                2 => tracing::info!(target: "raft_kv::script", "{message}"),
                _ => tracing::debug!(target: "raft_kv::script", "{message}"),
            }
            Ok(())
        })?;
        let known = lua.create_function(|_, name: mlua::LuaString| Ok(lookup(name.as_bytes()).is_some()))?;
        let stopped = exhausted.clone();
        let exhausted = lua.create_function(move |_, ()| Ok(stopped.get()))?;
        let prelude =
            lua.load(prelude_bytecode()?).set_name("=raft-kv").set_mode(mlua::chunk::ChunkMode::Binary);
        let (runner, raising): (mlua::Function, Table) =
            prelude.call((call, sha1hex, log, known, exhausted, REDIS_VERSION))?;
        let redis: Table = lua.globals().raw_get("redis")?;
        for pair in raising.pairs::<mlua::LuaString, mlua::Function>() {
            let (name, function) = pair?;
            redis.raw_set(name, c_function(&lua, function)?)?;
        }
        runner.call(function)
    })?;
    if exhausted.get() {
        return Ok(Frame::error(format!(
            "ERR Script ran past its budget of {budget} Lua instructions and was stopped (what it wrote \
             before stays written) script: {}",
            sha()
        )));
    }
    if ok {
        return Ok(to_frame(&value, 0));
    }
    Ok(match &value {
        LuaValue::Table(error) => {
            let message: String = match error.raw_get::<LuaValue>("err")? {
                LuaValue::String(s) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
                _ => "ERR unknown error".to_owned(),
            };
            let source: Option<String> = error.raw_get("source").ok().flatten();
            let line: Option<i64> = error.raw_get("line").ok().flatten();
            match (source, line) {
                (Some(source), Some(line)) => {
                    Frame::Error(one_line(&format!("{message} script: {}, on {source}:{line}.", sha())))
                }
                _ => Frame::Error(one_line(&message)),
            }
        }
        // Lua 5.1's error on a failed allocation (the memory limit).
        LuaValue::String(message) if message.as_bytes().as_ref() == b"not enough memory" => {
            Frame::error(format!(
            "ERR Script used more than {} MiB of memory and was stopped (what it wrote before stays written) \
             script: {}",
            MEMORY_LIMIT >> 20,
            sha()
        ))
        }
        other => Frame::error(format!(
            "ERR {} script: {}",
            one_line(&other.to_string().unwrap_or_default()),
            sha()
        )),
    })
}

/// The prelude compiled once (compiling it is most of the cost of a run): Lua bytecode of this
/// binary's own making, the only bytecode a state here ever loads.
fn prelude_bytecode() -> mlua::Result<&'static [u8]> {
    static BYTECODE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    if let Some(bytecode) = BYTECODE.get() {
        return Ok(bytecode);
    }
    let lua = Lua::new();
    let bytecode = lua.load(PRELUDE).set_name("=raft-kv").into_function()?.dump(false);
    Ok(BYTECODE.get_or_init(|| bytecode))
}

/// The environment's Lua half: the `redis` library around the Rust primitives it is given, the
/// error handler that notes where an error comes from (as Redis's `__redis__err__handler`
/// does), loaders that refuse bytecode, and read-only globals. Returns the function that runs
/// the script under the handler.
const PRELUDE: &str = r#"
local call, sha1hex, log, known, exhausted, version = ...
local dbg = debug
debug = nil
local error, type, select, tostring, rawget, xpcall = error, type, select, tostring, rawget, xpcall

local function handler(err)
  local level = 2
  local info = dbg.getinfo(level, 'nSl')
  while info and (info.what == 'C' or info.source == '=raft-kv') do
    level = level + 1
    info = dbg.getinfo(level, 'nSl')
  end
  if type(err) ~= 'table' then
    err = {err = 'ERR ' .. tostring(err)}
  end
  if info then
    err['source'] = info.source
    err['line'] = info.currentline
  end
  return err
end

local function error_table(message)
  local code, text = 'ERR', message
  if message:sub(1, 1) == '-' then
    local space = message:find(' ', 1, true)
    if space then
      code, text = message:sub(2, space - 1), message:sub(space + 1)
    else
      text = message:sub(2)
    end
  end
  text = text:gsub('^[\r\n]+', ''):gsub('[\r\n]+$', '')
  return {err = code .. ' ' .. text}
end

local function raise(message)
  error({err = message})
end

redis = {}
redis.pcall = call
-- The functions that raise errors, which become C functions (see `c_function`).
local raising = {}
function raising.call(...)
  local reply = call(...)
  if type(reply) == 'table' and rawget(reply, 'err') ~= nil then
    error(reply)
  end
  return reply
end
function redis.error_reply(...)
  local message = ...
  if select('#', ...) ~= 1 or type(message) ~= 'string' then
    return error_table('wrong number or type of arguments')
  end
  if message:sub(1, 1) ~= '-' then
    message = '-' .. message
  end
  return error_table(message)
end
function redis.status_reply(...)
  local message = ...
  if select('#', ...) ~= 1 or type(message) ~= 'string' then
    return error_table('wrong number or type of arguments')
  end
  return {ok = message}
end
function raising.sha1hex(...)
  if select('#', ...) ~= 1 then
    error('wrong number of arguments', 0)
  end
  return sha1hex(tostring((...)))
end
redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING = 0, 1, 2, 3
function raising.log(...)
  local n = select('#', ...)
  if n < 2 then
    raise('ERR redis.log() requires two arguments or more.')
  end
  local level = ...
  if type(level) ~= 'number' then
    raise('ERR First argument must be a number (log level).')
  end
  if level < 0 or level > 3 then
    raise('ERR Invalid debug level.')
  end
  local parts = {}
  for i = 2, n do
    parts[#parts + 1] = tostring((select(i, ...)))
  end
  log(level, table.concat(parts, ' '))
end
function raising.setresp(...)
  if select('#', ...) ~= 1 then
    raise('ERR redis.setresp() requires one argument.')
  end
  local resp = ...
  if resp ~= 2 and resp ~= 3 then
    raise('ERR RESP version must be 2 or 3.')
  end
  if resp == 3 then
    raise('ERR raft-kv scripts read replies as RESP2 only: redis.setresp(3) is not supported.')
  end
end
redis.REPL_NONE, redis.REPL_AOF, redis.REPL_SLAVE, redis.REPL_REPLICA, redis.REPL_ALL = 0, 1, 2, 2, 3
function raising.set_repl(...)
  if select('#', ...) ~= 1 then
    raise('ERR redis.set_repl() requires one argument.')
  end
  local flags = ...
  if type(flags) ~= 'number' or flags < 0 or flags > 3 then
    raise('ERR Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE.')
  end
end
function redis.replicate_commands()
  return true
end
function redis.breakpoint()
  return false
end
function redis.debug()
end
function raising.acl_check_cmd(...)
  local name = ...
  if select('#', ...) < 1 or type(name) ~= 'string' or not known(name) then
    raise('ERR Invalid command passed to redis.acl_check_cmd()')
  end
  return true
end
redis.REDIS_VERSION = version
local major, minor, patch = version:match('(%d+)%.(%d+)%.(%d+)')
redis.REDIS_VERSION_NUM = major * 65536 + minor * 256 + patch

-- A script past its budget cannot catch the error that stops it.
local raw_pcall, raw_xpcall, raw_resume = pcall, xpcall, coroutine.resume
local function pass(ok, ...)
  if not ok and exhausted() then
    error((...), 0)
  end
  return ok, ...
end
rawset(_G, 'pcall', function(...)
  return pass(raw_pcall(...))
end)
rawset(_G, 'xpcall', function(...)
  return pass(raw_xpcall(...))
end)
coroutine.resume = function(...)
  return pass(raw_resume(...))
end

local raw_loadstring = loadstring
function loadstring(text, name)
  if type(text) == 'string' and text:byte(1) == 27 then
    return nil, 'loading bytecode is not allowed'
  end
  return raw_loadstring(text, name)
end
function load(reader, name)
  local parts = {}
  while true do
    local part = reader()
    if part == nil or part == '' then
      break
    end
    parts[#parts + 1] = part
  end
  return loadstring(table.concat(parts), name)
end
for _, name in ipairs({'print', 'dofile', 'loadfile', 'setfenv', 'getfenv', 'newproxy', 'module', 'require'}) do
  rawset(_G, name, nil)
end

setmetatable(_G, {
  __index = function(_, name)
    error("Script attempted to access nonexistent global variable '" .. tostring(name) .. "'", 2)
  end,
  __newindex = function()
    error('Attempt to modify a readonly table', 2)
  end,
})

return function(script)
  return xpcall(script, handler)
end, raising
"#;

/// `function` as a C function. Redis's `redis.call`, `redis.log` ... are C functions, and a
/// `return redis.call(...)` calling a Lua function would be a tail call, which drops the
/// script's frame, and with it the line an error reports.
fn c_function(lua: &Lua, function: mlua::Function) -> mlua::Result<mlua::Function> {
    // SAFETY: `trampoline` keeps to the Lua C API's rules (see it); the closure takes the
    // function pushed as the one argument as its upvalue and leaves itself as the one result.
    unsafe {
        lua.exec_raw(function, |state| {
            mlua::ffi::lua_pushcclosure(state, trampoline, 1);
        })
    }
}

/// Calls the closure's upvalue with the closure's arguments, and returns what it returns.
///
/// # Safety
/// Called by Lua as a C function. It holds nothing that needs dropping when `lua_call` leaves
/// it by a long jump (an error).
unsafe extern "C-unwind" fn trampoline(state: *mut mlua::ffi::lua_State) -> std::ffi::c_int {
    use mlua::ffi;
    let args = ffi::lua_gettop(state);
    if ffi::lua_checkstack(state, 2) == 0 {
        ffi::luaL_error(state, c"stack overflow".as_ptr());
    }
    ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
    ffi::lua_insert(state, 1);
    ffi::lua_call(state, args, ffi::LUA_MULTRET);
    ffi::lua_gettop(state)
}

/// A Redis error reply as the table scripts see (what `redis.pcall` returns).
fn error_table(lua: &Lua, message: &str) -> mlua::Result<LuaValue> {
    let table = lua.create_table()?;
    table.raw_set("err", message)?;
    table.raw_set("ignore_error_stats_update", true)?;
    Ok(LuaValue::Table(table))
}

/// A command's arguments from a `redis.call`: strings, and numbers as Lua prints them; `None`
/// if one is of another type.
fn command_args(lua: &Lua, args: MultiValue) -> mlua::Result<Option<Vec<Bytes>>> {
    let mut argv = Vec::with_capacity(args.len());
    for arg in args {
        match arg {
            LuaValue::String(s) => argv.push(Bytes::copy_from_slice(&s.as_bytes())),
            number @ (LuaValue::Integer(_) | LuaValue::Number(_)) => match lua.coerce_string(number)? {
                Some(s) => argv.push(Bytes::copy_from_slice(&s.as_bytes())),
                None => return Ok(None),
            },
            _ => return Ok(None),
        }
    }
    Ok(Some(argv))
}

/// Runs one command a script asked for, as Redis 7.0 does: the commands flagged `noscript`
/// refused, a write refused to a read-only script, blocking commands run without blocking.
fn dispatch(argv: Vec<Bytes>, host: &mut dyn ScriptHost, now_ms: i64, seed: u64) -> Result<Frame> {
    let Some(spec) = lookup(&argv[0]) else {
        return Ok(Frame::error("ERR Unknown Redis command called from script"));
    };
    if spec.flags.contains(&"noscript") {
        return Ok(Frame::error("ERR This Redis command is not allowed from script"));
    }
    let mut command = match Command::parse_checked(argv) {
        Err(_) => return Ok(Frame::error("ERR Wrong number of args calling Redis command from script")),
        Ok(Err(reply)) => return Ok(reply),
        Ok(Ok(command)) => command,
    };
    reseed(&mut command, seed);
    let read_only = |host: &mut dyn ScriptHost, op| {
        host.write(op)
            .unwrap_or_else(|| Ok(Frame::error("ERR Write commands are not allowed from read-only scripts.")))
    };
    Ok(match command {
        Command::Read(query) => host.read(&query)?,
        Command::Write(op) | Command::Blocking { op, .. } => read_only(host, op)?,
        Command::Local(LocalCommand::Ping(None)) => Frame::Simple("PONG".into()),
        Command::Local(LocalCommand::Ping(Some(message)) | LocalCommand::Echo(message)) => {
            Frame::Bulk(message)
        }
        Command::Local(LocalCommand::Time) => {
            let micros = now_ms.max(0) * 1000;
            Frame::Array(vec![
                Frame::bulk((micros / 1_000_000).to_string()),
                Frame::bulk((micros % 1_000_000).to_string()),
            ])
        }
        Command::Local(LocalCommand::Select(index)) => match parse_i64(&index) {
            Some(0) => Frame::ok(),
            Some(_) => Frame::error("ERR DB index is out of range"),
            None => Frame::error(crate::command::NOT_INTEGER),
        },
        _ => Frame::error("ERR This Redis command is not allowed from script"),
    })
}

/// Makes a command that picks at random pick by `seed`.
fn reseed(command: &mut Command, seed: u64) {
    match command {
        Command::Read(
            ReadQuery::RandomKey { seed: s }
            | ReadQuery::HRandField { seed: s, .. }
            | ReadQuery::SRandMember { seed: s, .. }
            | ReadQuery::ZRandMember { seed: s, .. },
        )
        | Command::Write(WriteOp::SPop { seed: s, .. }) => *s = seed,
        _ => {}
    }
}

/// The next of a sequence of seeds (splitmix64).
fn next_seed(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A reply as a script sees it (Redis's RESP2 conversion).
fn to_lua(lua: &Lua, frame: Frame) -> mlua::Result<LuaValue> {
    Ok(match frame {
        Frame::Simple(status) => {
            let table = lua.create_table()?;
            table.raw_set("ok", status)?;
            LuaValue::Table(table)
        }
        Frame::Error(message) => error_table(lua, &message)?,
        Frame::Integer(n) => LuaValue::Number(n as f64),
        Frame::Bulk(data) => LuaValue::String(lua.create_string(&data)?),
        Frame::Null | Frame::NullArray => LuaValue::Boolean(false),
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.into_iter().enumerate() {
                table.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            LuaValue::Table(table)
        }
        Frame::Map(pairs) | Frame::Pairs(pairs) => {
            let table = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
            for (i, (key, value)) in pairs.into_iter().enumerate() {
                table.raw_set(2 * i + 1, to_lua(lua, key)?)?;
                table.raw_set(2 * i + 2, to_lua(lua, value)?)?;
            }
            LuaValue::Table(table)
        }
        Frame::Double(d) => LuaValue::String(lua.create_string(double_text(d))?),
        Frame::Boolean(b) => LuaValue::Number(b as i64 as f64),
        Frame::Verbatim(text) => LuaValue::String(lua.create_string(text)?),
    })
}

/// What a script returns, as the reply (Redis's conversion): numbers truncated to integers,
/// `false` and `nil` null, `true` 1, `{ok=...}` a status, `{err=...}` an error, other tables
/// arrays up to their first nil.
fn to_frame(value: &LuaValue, depth: usize) -> Frame {
    match value {
        LuaValue::Boolean(true) => Frame::Integer(1),
        LuaValue::Integer(n) => Frame::Integer(*n),
        LuaValue::Number(n) => Frame::Integer(c_integer(*n)),
        LuaValue::String(s) => Frame::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        LuaValue::Table(_) if depth >= MAX_REPLY_DEPTH => Frame::error("ERR reached lua stack limit"),
        LuaValue::Table(table) => {
            if let Ok(LuaValue::String(error)) = table.raw_get::<LuaValue>("err") {
                return Frame::Error(one_line(&String::from_utf8_lossy(&error.as_bytes())));
            }
            if let Ok(LuaValue::String(status)) = table.raw_get::<LuaValue>("ok") {
                return Frame::Simple(one_line(&String::from_utf8_lossy(&status.as_bytes())));
            }
            let mut items = Vec::new();
            for i in 1.. {
                match table.raw_get::<LuaValue>(i) {
                    Ok(LuaValue::Nil) | Err(_) => break,
                    Ok(item) => items.push(to_frame(&item, depth + 1)),
                }
            }
            Frame::Array(items)
        }
        _ => Frame::Null,
    }
}

/// A Lua number as C's `(long long)` cast makes it on x86-64: truncated, and the "integer
/// indefinite" `i64::MIN` when out of range or NaN.
fn c_integer(n: f64) -> i64 {
    // NaN is in no range.
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// An error or status text on one line, as Redis sends it.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// Installs what Redis gives scripts beyond Lua's own libraries: its deterministic
/// `math.random`, `bit` and `cjson`.
fn install_libraries(lua: &Lua, seed: u64) -> mlua::Result<()> {
    let globals = lua.globals();
    let math: Table = globals.raw_get("math")?;
    let state = Rc::new(Cell::new(rand48_seed(seed as i32)));
    let random_state = state.clone();
    math.raw_set(
        "random",
        lua.create_function(move |_, args: MultiValue| {
            let next = rand48_next(&random_state);
            let r = (next % i32::MAX as u32) as f64 / i32::MAX as f64;
            let int = |v: &LuaValue| -> mlua::Result<i64> {
                match v {
                    LuaValue::Integer(n) => Ok(*n),
                    LuaValue::Number(n) => Ok(*n as i64),
                    _ => Err(mlua::Error::runtime("bad argument to 'random' (number expected)")),
                }
            };
            match args.len() {
                0 => Ok(r),
                1 => {
                    let upper = int(&args[0])?;
                    if upper < 1 {
                        return Err(mlua::Error::runtime("bad argument #1 to 'random' (interval is empty)"));
                    }
                    Ok((r * upper as f64).floor() + 1.0)
                }
                2 => {
                    let (lower, upper) = (int(&args[0])?, int(&args[1])?);
                    if lower > upper {
                        return Err(mlua::Error::runtime("bad argument #2 to 'random' (interval is empty)"));
                    }
                    Ok((r * (upper - lower + 1) as f64).floor() + lower as f64)
                }
                _ => Err(mlua::Error::runtime("wrong number of arguments")),
            }
        })?,
    )?;
    math.raw_set(
        "randomseed",
        lua.create_function(move |_, seed: f64| {
            state.set(rand48_seed(seed as i64 as i32));
            Ok(())
        })?,
    )?;
    globals.raw_set("bit", bit_library(lua)?)?;
    globals.raw_set("cjson", cjson_library(lua)?)?;
    Ok(())
}

/// `srand48`: the state a seed starts.
fn rand48_seed(seed: i32) -> u64 {
    (((seed as u32 as u64) << 16) | 0x330e) & ((1 << 48) - 1)
}

/// `lrand48`: the next 31-bit number.
fn rand48_next(state: &Cell<u64>) -> u32 {
    let next = state.get().wrapping_mul(0x5_deec_e66d).wrapping_add(0xb) & ((1 << 48) - 1);
    state.set(next);
    (next >> 17) as u32
}

/// LuaBitOp's argument: a number made a 32-bit integer by rounding (half to even) and wrapping.
fn to_bits(value: f64) -> u32 {
    (value + 6_755_399_441_055_744.0).to_bits() as u32
}

/// The `bit` library (LuaBitOp, 32-bit operations on numbers).
fn bit_library(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    let out = |b: u32| b as i32 as f64;
    bit.raw_set("tobit", lua.create_function(move |_, x: f64| Ok(out(to_bits(x))))?)?;
    bit.raw_set("bnot", lua.create_function(move |_, x: f64| Ok(out(!to_bits(x))))?)?;
    bit.raw_set("bswap", lua.create_function(move |_, x: f64| Ok(out(to_bits(x).swap_bytes())))?)?;
    type Fold = fn(u32, u32) -> u32;
    let folds: [(&str, Fold); 3] = [("band", |a, b| a & b), ("bor", |a, b| a | b), ("bxor", |a, b| a ^ b)];
    for (name, fold) in folds {
        let function = lua.create_function(move |_, (first, rest): (f64, mlua::Variadic<f64>)| {
            Ok(out(rest.iter().fold(to_bits(first), |acc, x| fold(acc, to_bits(*x)))))
        })?;
        bit.raw_set(name, function)?;
    }
    let shifts: [(&str, Fold); 5] = [
        ("lshift", |b, n| b << (n & 31)),
        ("rshift", |b, n| b >> (n & 31)),
        ("arshift", |b, n| ((b as i32) >> (n & 31)) as u32),
        ("rol", |b, n| b.rotate_left(n & 31)),
        ("ror", |b, n| b.rotate_right(n & 31)),
    ];
    for (name, shift) in shifts {
        let function =
            lua.create_function(move |_, (x, n): (f64, f64)| Ok(out(shift(to_bits(x), to_bits(n)))))?;
        bit.raw_set(name, function)?;
    }
    let tohex = lua.create_function(|_, (x, n): (f64, Option<f64>)| {
        let mut b = to_bits(x);
        let mut n = n.map_or(8, |n| to_bits(n) as i32);
        let digits: &[u8; 16] = if n < 0 { b"0123456789ABCDEF" } else { b"0123456789abcdef" };
        n = n.unsigned_abs().min(8) as i32;
        let mut text = vec![0u8; n as usize];
        for slot in text.iter_mut().rev() {
            *slot = digits[(b & 15) as usize];
            b >>= 4;
        }
        Ok(String::from_utf8(text).expect("hex digits"))
    })?;
    bit.raw_set("tohex", tohex)?;
    Ok(bit)
}

/// cjson's `null`: a light userdata holding NULL.
fn json_null() -> LuaValue {
    LuaValue::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// The `cjson` library: `encode`, `decode` and `null`, as Lua CJSON behaves by default.
fn cjson_library(lua: &Lua) -> mlua::Result<Table> {
    let cjson = lua.create_table()?;
    cjson.raw_set("null", json_null())?;
    cjson.raw_set(
        "encode",
        lua.create_function(|lua, value: LuaValue| {
            let mut out = Vec::new();
            encode_json(&value, 0, &mut out).map_err(mlua::Error::runtime)?;
            lua.create_string(out)
        })?,
    )?;
    cjson.raw_set(
        "decode",
        lua.create_function(|lua, text: mlua::LuaString| {
            let parsed: serde_json::Value = serde_json::from_slice(&text.as_bytes())
                .map_err(|e| mlua::Error::runtime(format!("Expected value but found invalid JSON: {e}")))?;
            json_to_lua(lua, &parsed)
        })?,
    )?;
    Ok(cjson)
}

fn json_to_lua(lua: &Lua, value: &serde_json::Value) -> mlua::Result<LuaValue> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => json_null(),
        Json::Bool(b) => LuaValue::Boolean(*b),
        Json::Number(n) => LuaValue::Number(n.as_f64().unwrap_or(0.0)),
        Json::String(s) => LuaValue::String(lua.create_string(s)?),
        Json::Array(items) => {
            let table = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                table.raw_set(i + 1, json_to_lua(lua, item)?)?;
            }
            LuaValue::Table(table)
        }
        Json::Object(fields) => {
            let table = lua.create_table_with_capacity(0, fields.len())?;
            for (key, item) in fields {
                table.raw_set(key.as_str(), json_to_lua(lua, item)?)?;
            }
            LuaValue::Table(table)
        }
    })
}

/// Encodes a Lua value as Lua CJSON does: numbers as `%.14g`, `/` escaped, a table with only
/// positive integer keys an array (unless excessively sparse), any other an object.
fn encode_json(value: &LuaValue, depth: usize, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    if depth > 1000 {
        return Err(format!("Cannot serialise, excessive nesting ({})", depth));
    }
    match value {
        LuaValue::Nil => out.extend_from_slice(b"null"),
        LuaValue::LightUserData(data) if data.0.is_null() => out.extend_from_slice(b"null"),
        LuaValue::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        LuaValue::Integer(n) => encode_json_number(*n as f64, out)?,
        LuaValue::Number(n) => encode_json_number(*n, out)?,
        LuaValue::String(s) => encode_json_string(&s.as_bytes(), out),
        LuaValue::Table(table) => {
            let mut entries = Vec::new();
            for pair in table.clone().pairs::<LuaValue, LuaValue>() {
                entries.push(pair.map_err(|e| e.to_string())?);
            }
            let index = |key: &LuaValue| match key {
                LuaValue::Integer(n) if *n >= 1 => Some(*n as u64),
                LuaValue::Number(n) if *n >= 1.0 && n.fract() == 0.0 => Some(*n as u64),
                _ => None,
            };
            let max = entries.iter().map(|(k, _)| index(k)).try_fold(0u64, |max, i| i.map(|i| max.max(i)));
            match max {
                Some(max) if max > 0 => {
                    if max > entries.len() as u64 * 2 && max > 10 {
                        return Err("Cannot serialise table: excessively sparse array".to_owned());
                    }
                    out.push(b'[');
                    for i in 1..=max {
                        if i > 1 {
                            out.push(b',');
                        }
                        let item: LuaValue = table.raw_get(i).map_err(|e| e.to_string())?;
                        encode_json(&item, depth + 1, out)?;
                    }
                    out.push(b']');
                }
                _ => {
                    out.push(b'{');
                    for (n, (key, item)) in entries.iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        match key {
                            LuaValue::String(s) => encode_json_string(&s.as_bytes(), out),
                            LuaValue::Integer(_) | LuaValue::Number(_) => {
                                let mut text = Vec::new();
                                encode_json(key, depth + 1, &mut text)?;
                                encode_json_string(&text, out);
                            }
                            _ => {
                                return Err(
                                    "Cannot serialise table: table key must be a number or string".into()
                                )
                            }
                        }
                        out.push(b':');
                        encode_json(item, depth + 1, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => return Err(format!("Cannot serialise {}: type not supported", other.type_name())),
    }
    Ok(())
}

fn encode_json_number(n: f64, out: &mut Vec<u8>) -> std::result::Result<(), String> {
    if !n.is_finite() {
        return Err("Cannot serialise number: must not be NaN or Inf".to_owned());
    }
    if n == 0.0 {
        out.extend_from_slice(if n.is_sign_negative() { b"-0" } else { b"0" });
    } else {
        out.extend_from_slice(format_g(n, 14).as_bytes());
    }
    Ok(())
}

fn encode_json_string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c if c < 0x20 || c == 0x7f => out.extend_from_slice(format!("\\u{:04x}", c).as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Queued;
    use crate::keyspace::tests::Replica;
    use crate::keyspace::Limits;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn eval(script: &str, keys: &[&str], args: &[&str]) -> Eval {
        Eval {
            script: Script::Body(b(script)),
            keys: keys.iter().map(|k| b(k)).collect(),
            args: args.iter().map(|a| b(a)).collect(),
            budget: 0,
        }
    }

    /// Runs `script` as the write of log entry `index` on `replica`.
    fn run_at(replica: &mut Replica, index: u64, eval: Eval) -> Frame {
        replica.apply(index, &[Queued::Write(WriteOp::Eval(eval))]).remove(0)
    }

    fn run_one(script: &str) -> Frame {
        run_at(&mut Replica::new(Limits::default()), 1, eval(script, &[], &[]))
    }

    fn error(frame: Frame) -> String {
        match frame {
            Frame::Error(e) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn a_script_reads_and_writes_the_keyspace_of_its_entry() {
        let mut replica = Replica::new(Limits::default());
        let script = "redis.call('set', KEYS[1], ARGV[1]) redis.call('rpush', KEYS[2], ARGV[1], ARGV[2]) \
                      return {redis.call('get', KEYS[1]), redis.call('lrange', KEYS[2], 0, -1)}";
        let reply = run_at(&mut replica, 1, eval(script, &["k", "l"], &["v", "w"]));
        assert_eq!(
            reply,
            Frame::Array(vec![Frame::bulk("v"), Frame::Array(vec![Frame::bulk("v"), Frame::bulk("w")])])
        );
        assert_eq!(replica.read(&ReadQuery::Get(b("k"))), Frame::bulk("v"), "the write is the entry's");
    }

    #[test]
    fn replies_convert_both_ways_as_redis_converts_them() {
        let reply = run_one("return {1, 'a', {2, {3}}, false, true, 3.99, -2.5, {ok='fine'}, nil, 9}");
        let expected = vec![
            Frame::Integer(1),
            Frame::bulk("a"),
            Frame::Array(vec![Frame::Integer(2), Frame::Array(vec![Frame::Integer(3)])]),
            Frame::Null,
            Frame::Integer(1),
            Frame::Integer(3),
            Frame::Integer(-2),
            Frame::Simple("fine".into()),
        ];
        assert_eq!(reply, Frame::Array(expected), "up to the first nil");
        assert_eq!(run_one("return 1e20"), Frame::Integer(i64::MIN), "as C's cast on x86-64");
        assert_eq!(run_one("return {err='MY boom'}"), Frame::Error("MY boom".into()));
        assert_eq!(run_one("return redis.error_reply('hi')"), Frame::Error("ERR hi".into()));
        assert_eq!(run_one("return redis.status_reply('hi')"), Frame::Simple("hi".into()));
        let script = "redis.call('set', 'k', 'v') local ok = redis.call('set', 'k', 'v') \
                      return {type(ok), ok.ok, redis.call('get', 'nokey'), redis.call('incr', 'n'), 1.5}";
        assert_eq!(
            run_one(script),
            Frame::Array(vec![
                Frame::bulk("table"),
                Frame::bulk("OK"),
                Frame::Null,
                Frame::Integer(1),
                Frame::Integer(1)
            ])
        );
        assert_eq!(
            run_one("redis.call('set', 'f', 1.5) redis.call('set', 'i', 10) return {redis.call('get', 'f'), redis.call('get', 'i')}"),
            Frame::Array(vec![Frame::bulk("1.5"), Frame::bulk("10")]),
            "numbers as arguments are written as Lua prints them"
        );
    }

    #[test]
    fn errors_read_as_redis_writes_them() {
        let script = "return redis.call('incr', KEYS[1])";
        let sha = sha1_hex(script.as_bytes());
        let mut replica = Replica::new(Limits::default());
        replica.apply(1, &[Queued::Write(WriteOp::Set { key: b("s"), value: b("x") })]);
        assert_eq!(
            error(run_at(&mut replica, 2, eval(script, &["s"], &[]))),
            format!("ERR value is not an integer or out of range script: {sha}, on @user_script:1.")
        );
        let pcall =
            "local r = redis.pcall('incr', KEYS[1]) return {r.err, tostring(r.ignore_error_stats_update)}";
        assert_eq!(
            run_at(&mut replica, 3, eval(pcall, &["s"], &[])),
            Frame::Array(vec![
                Frame::bulk("ERR value is not an integer or out of range"),
                Frame::bulk("true")
            ])
        );
        let cases = [
            ("\n\nreturn redis.call('nosuch')", "ERR Unknown Redis command called from script", 3),
            ("return redis.call('get')", "ERR Wrong number of args calling Redis command from script", 1),
            ("return redis.call('multi')", "ERR This Redis command is not allowed from script", 1),
            (
                "return redis.call('eval', 'return 1', 0)",
                "ERR This Redis command is not allowed from script",
                1,
            ),
            ("return redis.call()", "ERR Please specify at least one argument for this redis lib call", 1),
            (
                "return redis.call('get', {})",
                "ERR Lua redis lib command arguments must be strings or integers",
                1,
            ),
            ("return x", "ERR user_script:1: Script attempted to access nonexistent global variable 'x'", 1),
            ("x = 1", "ERR user_script:1: Attempt to modify a readonly table", 1),
            ("local a = 1\nerror('boom')", "ERR user_script:2: boom", 2),
            ("error({err='MY boom'})", "MY boom", 1),
            ("redis.log('x')", "ERR redis.log() requires two arguments or more.", 1),
        ];
        for (script, message, line) in cases {
            let sha = sha1_hex(script.as_bytes());
            assert_eq!(error(run_one(script)), format!("{message} script: {sha}, on @user_script:{line}."));
        }
        assert_eq!(
            error(run_one("retur 1")),
            "ERR Error compiling script (new function): user_script:1: '=' expected near '1'"
        );
        assert_eq!(
            error(run_one("return redis.pcall('nosuch')")),
            "ERR Unknown Redis command called from script",
            "an error table returned is the reply, without the script's name"
        );
        let unknown = Eval { script: Script::Sha(b("ffff")), ..eval("", &[], &[]) };
        assert_eq!(error(run_at(&mut replica, 4, unknown)), NO_SCRIPT);
    }

    #[test]
    fn a_failed_script_keeps_what_it_wrote_before() {
        let mut replica = Replica::new(Limits::default());
        let reply = run_at(&mut replica, 1, eval("redis.call('set', 'a', '1') error('late')", &[], &[]));
        assert!(error(reply).starts_with("ERR user_script:1: late"));
        assert_eq!(replica.read(&ReadQuery::Get(b("a"))), Frame::bulk("1"));
    }

    #[test]
    fn a_read_only_script_cannot_write() {
        let replica = Replica::new(Limits::default());
        let script = "return redis.call('set', 'a', 'b')";
        let sha = sha1_hex(script.as_bytes());
        assert_eq!(
            error(replica.read(&ReadQuery::Eval(eval(script, &[], &[])))),
            format!("ERR Write commands are not allowed from read-only scripts. script: {sha}, on @user_script:1.")
        );
        assert_eq!(replica.read(&ReadQuery::Get(b("a"))), Frame::Null);
        assert_eq!(
            replica.read(&ReadQuery::Eval(eval("return redis.call('exists', 'a')", &[], &[]))),
            Frame::Integer(0)
        );
    }

    #[test]
    fn runaway_scripts_stop_at_their_budget_on_every_replica() {
        let mut replica = Replica::new(Limits::default());
        for (i, script) in [
            "redis.call('set', 'a', '1') while true do end",
            "while true do pcall(function() while true do end end) end",
            "local co = coroutine.wrap(function() while true do end end) co()",
        ]
        .into_iter()
        .enumerate()
        {
            let reply =
                run_at(&mut replica, 1 + i as u64, Eval { budget: 100_000, ..eval(script, &[], &[]) });
            let reply = error(reply);
            assert!(reply.contains("budget of 100000 Lua instructions"), "{script}: {reply}");
        }
        assert_eq!(replica.read(&ReadQuery::Get(b("a"))), Frame::bulk("1"));
        let hungry = "local t = {} for i = 1, 1e9 do t[i] = {i, i, i, i} end";
        assert!(error(run_one(hungry)).contains("more than 256 MiB of memory"));
        let busy = "for i = 1, 1e9 do redis.call('set', 'k', i) end";
        assert!(error(run_one(busy)).contains("budget"), "a command counts against the budget");
    }

    #[test]
    fn random_choices_follow_the_entry() {
        let script = "redis.call('sadd', 's', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h') \
                      return {math.random(1000000), math.random(1000000), redis.call('spop', 's'), \
                      redis.call('srandmember', 's'), redis.call('time')[1]}";
        let run = |index| run_at(&mut Replica::new(Limits::default()), index, eval(script, &[], &[]));
        assert_eq!(run(7), run(7), "the same entry, the same choices on every replica");
        assert_ne!(run(7), run(8));
        assert_eq!(
            run_one("math.randomseed(7) return {math.random(100), math.random(100)}"),
            Frame::Array(vec![Frame::Integer(27), Frame::Integer(69)]),
            "Redis's rand48"
        );
    }

    #[test]
    fn the_bit_and_cjson_libraries() {
        let script = "return {bit.tohex(65535, -4), bit.tohex(-1), bit.band(255, 15, 3), bit.tobit(2^32 + 5), \
                      bit.lshift(1, 31), bit.rshift(-1, 28), bit.arshift(-256, 4), bit.bxor(5, 3), bit.bnot(0), \
                      bit.rol(1, 33), bit.bswap(1)}";
        let mut expected = vec![Frame::bulk("FFFF"), Frame::bulk("ffffffff")];
        expected.extend([3, 5, -2147483648, 15, -16, 6, -1, 2, 16777216].map(Frame::Integer));
        assert_eq!(run_one(script), Frame::Array(expected));
        assert_eq!(
            run_one("return cjson.encode({1, 2.5, 'x/y\\n', {a = true}, {}})"),
            Frame::bulk("[1,2.5,\"x\\/y\\n\",{\"a\":true},{}]")
        );
        let script = "local t = cjson.decode('{\"a\":[1,2,null],\"b\":\"c\"}') \
                      return {t.a[2], t.b, tostring(t.a[3] == cjson.null), #t.a}";
        assert_eq!(
            run_one(script),
            Frame::Array(vec![Frame::Integer(2), Frame::bulk("c"), Frame::bulk("true"), Frame::Integer(3)])
        );
        assert!(
            error(run_one("return cjson.encode({[1] = 1, [100] = 2})")).contains("excessively sparse array")
        );
    }
}
