//! [`Db`] on a PostgreSQL connection: statements rewritten to `$N` and prepared once
//! per connection; a [`Param`] written as the type PostgreSQL inferred for its place
//! (`int4` or `int8`, `text` or `jsonb`).
//!
//! A transaction's statements are **pipelined**: one whose count nobody reads
//! ([`Db::defer`]) waits, and goes with the next statement whose answer is read, or
//! with the `COMMIT`, all written at once and answered in order. A batch of writes
//! (`store::write`) thus costs two round trips whatever it holds: `BEGIN` with the
//! holder's heartbeat (whose count says whether it still holds the run), then every
//! write, the events and `COMMIT`.
//!
//! The connection is `tokio-postgres`'s, driven by a current-thread runtime of its own
//! only while a call waits for its answers (as the blocking `postgres` client does): a
//! store blocks its caller's thread, which drives no async task (`crate::seam`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use postgres_openssl::{MakeTlsConnector, TlsStream};
use tokio_postgres::types::{IsNull, ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, Config, Connection, Socket, Statement};

use super::{Cell, Db, Dialect, Param, Row};
use crate::store::StoreError;

/// A statement's `?N` placeholders as PostgreSQL's `$N`.
fn dollars(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let numbered = c == '?' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if numbered { '$' } else { c });
    }
    out
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(v) => match *ty {
                Type::INT2 => i16::try_from(v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(v)?.to_sql(ty, out),
                Type::BOOL => (v != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => v.to_string().to_sql(ty, out),
                _ => v.to_sql(ty, out),
            },
            Param::Text(t) => match *ty {
                Type::JSON | Type::JSONB => serde_json::from_str::<serde_json::Value>(t)?.to_sql(ty, out),
                _ => t.to_sql(ty, out),
            },
            Param::Json(v) => match *ty {
                Type::JSON | Type::JSONB => v.to_sql(ty, out),
                _ => v.to_string().to_sql(ty, out),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A [`Param`] kept until its statement is sent.
#[derive(Debug)]
enum Owned {
    Null,
    Int(i64),
    Text(String),
    Json(serde_json::Value),
}

impl Owned {
    fn of(param: &Param<'_>) -> Owned {
        match *param {
            Param::Null => Owned::Null,
            Param::Int(v) => Owned::Int(v),
            Param::Text(t) => Owned::Text(t.to_string()),
            Param::Json(v) => Owned::Json(v.clone()),
        }
    }

    fn param(&self) -> Param<'_> {
        match self {
            Owned::Null => Param::Null,
            Owned::Int(v) => Param::Int(*v),
            Owned::Text(t) => Param::Text(t),
            Owned::Json(v) => Param::Json(v),
        }
    }
}

/// A statement to send, and whether its rows (or only its count) are wanted.
struct Call {
    statement: Statement,
    params: Vec<Owned>,
    rows: bool,
}

/// What a statement answered.
enum Answer {
    Count(u64),
    Rows(Vec<tokio_postgres::Row>),
}

/// The half of a connection that reads and writes the socket, and what it heard.
struct Driver {
    /// None once it ended (an error, or the server closed it): its client's calls then
    /// fail as closed.
    connection: Option<Connection<Socket, TlsStream<Socket>>>,
    /// A `NOTIFY` came since the last [`PgConn::wait_notified`].
    notified: bool,
    runtime: tokio::runtime::Runtime,
}

impl Driver {
    /// Runs `future` (calls on this connection's client) to its end, driving the
    /// connection meanwhile.
    fn block_on<F: Future>(&mut self, future: F) -> F::Output {
        let Driver { connection, notified, runtime } = self;
        let mut future = std::pin::pin!(future);
        runtime.block_on(std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = future.as_mut().poll(cx) {
                return Poll::Ready(out);
            }
            drive(connection, notified, cx);
            future.as_mut().poll(cx)
        }))
    }
}

/// Reads and writes what the connection's socket has, until it would block.
fn drive(connection: &mut Option<Connection<Socket, TlsStream<Socket>>>, notified: &mut bool, cx: &mut Context<'_>) {
    let Some(open) = connection.as_mut() else { return };
    loop {
        match open.poll_message(cx) {
            Poll::Ready(Some(Ok(AsyncMessage::Notification(_)))) => *notified = true,
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(e))) => {
                tracing::debug!(error = %e, "The PostgreSQL connection ended.");
                *connection = None;
                return;
            }
            Poll::Ready(None) => {
                *connection = None;
                return;
            }
            Poll::Pending => return,
        }
    }
}

/// One connection to PostgreSQL and its prepared statements.
pub(crate) struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
    /// Last: the runtime outlives the connection it drives.
    driver: Driver,
}

impl PgConn {
    pub(crate) fn connect(config: &Config, tls: MakeTlsConnector) -> Result<PgConn, tokio_postgres::Error> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime starts");
        let (client, connection) = runtime.block_on(config.connect(tls))?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
            driver: Driver { connection: Some(connection), notified: false, runtime },
        })
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.driver.connection.is_none() || self.client.is_closed()
    }

    /// Runs statements that take no parameters and give no rows, in one round trip
    /// (PostgreSQL's simple protocol: a migration's file, `LISTEN`).
    pub(crate) fn batch_execute(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.driver.block_on(self.client.batch_execute(sql))
    }

    /// Waits until a `NOTIFY` comes (true) or `timeout` passes (false). Those that
    /// came since the last wait count: they are the same news.
    pub(crate) fn wait_notified(&mut self, timeout: Duration) -> Result<bool, tokio_postgres::Error> {
        let already = std::mem::take(&mut self.driver.notified);
        if !already {
            let Driver { connection, notified, runtime } = &mut self.driver;
            let heard = std::future::poll_fn(|cx| {
                drive(connection, notified, cx);
                if *notified || connection.is_none() { Poll::Ready(()) } else { Poll::Pending }
            });
            let _ = runtime.block_on(async { tokio::time::timeout(timeout, heard).await });
        }
        if self.is_closed() {
            // The next call says why, as a closed connection's error.
            self.batch_execute("")?;
        }
        Ok(already || std::mem::take(&mut self.driver.notified))
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.driver.block_on(self.client.prepare(&dollars(sql)))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn call(&mut self, sql: &str, params: &[Param<'_>], rows: bool) -> Result<Call, tokio_postgres::Error> {
        Ok(Call { statement: self.statement(sql)?, params: params.iter().map(Owned::of).collect(), rows })
    }

    /// Sends `calls` at once and gives their answers in order: the first error when
    /// one failed (in a transaction, those after it fail as aborted, and a `COMMIT`
    /// after it rolls back).
    fn send(&mut self, calls: &[Call]) -> Result<Vec<Answer>, tokio_postgres::Error> {
        let client = &self.client;
        let futures: Vec<Pending<'_, Result<Answer, tokio_postgres::Error>>> = calls
            .iter()
            .map(|call| {
                let future = async move {
                    let params: Vec<Param<'_>> = call.params.iter().map(Owned::param).collect();
                    let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                    if call.rows {
                        client.query(&call.statement, &params).await.map(Answer::Rows)
                    } else {
                        client.execute(&call.statement, &params).await.map(Answer::Count)
                    }
                };
                Box::pin(future) as Pin<Box<dyn Future<Output = _>>>
            })
            .collect();
        let answers = self.driver.block_on(in_order(futures));
        answers.into_iter().collect()
    }

    /// Runs `f` in a transaction whose statements are pipelined (see the module's
    /// documentation), committed when it returns `Ok`, rolled back otherwise.
    pub(crate) fn transaction<R>(
        &mut self,
        f: impl FnOnce(&mut dyn Db) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let begin = self.call("BEGIN", &[], false)?;
        let mut tx = Pg { conn: self, pending: Some(vec![begin]), begun: false, ended: false };
        let result = f(&mut tx).and_then(|result| {
            // A transaction that wrote nothing was never sent: nothing to commit.
            let untouched = !tx.begun && tx.pending.as_ref().is_some_and(|p| p.len() == 1);
            if !tx.ended && !untouched {
                let commit = tx.conn.call("COMMIT", &[], false)?;
                tx.ended = true;
                tx.flush(commit)?;
            }
            Ok(result)
        });
        // A transaction the server began and no `COMMIT` ended (a statement or `f`
        // failed) is rolled back; one whose `BEGIN` was never sent is not there.
        if result.is_err() && tx.begun && !tx.ended {
            let _ = tx.conn.batch_execute("ROLLBACK");
        }
        result
    }

    /// `f` on the connection, each statement sent when it is called.
    pub(crate) fn direct<R>(&mut self, f: impl FnOnce(&mut dyn Db) -> Result<R, StoreError>) -> Result<R, StoreError> {
        f(&mut Pg { conn: self, pending: None, begun: false, ended: false })
    }
}

/// A call under way.
type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Polls `futures` in the order given until each has its answer: the first poll of
/// each writes its request, so they go out in that order, in one round trip.
async fn in_order<T>(mut futures: Vec<Pending<'_, T>>) -> Vec<T> {
    let mut answers: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (future, answer) in futures.iter_mut().zip(answers.iter_mut()) {
            if answer.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(out) => *answer = Some(out),
                    Poll::Pending => all = false,
                }
            }
        }
        if all { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    answers.into_iter().map(|a| a.expect("every future answered")).collect()
}

/// [`Db`] on a [`PgConn`], in a transaction (statements pipelined) or not.
struct Pg<'a> {
    conn: &'a mut PgConn,
    /// In a transaction: the statements not sent yet (its `BEGIN` first).
    pending: Option<Vec<Call>>,
    /// Something of the transaction was sent: the server began it.
    begun: bool,
    /// Its `COMMIT` was sent (with its last statement, [`Db::query_last`]).
    ended: bool,
}

impl Pg<'_> {
    /// Sends what waits and `last`; gives `last`'s answer.
    fn flush(&mut self, last: Call) -> Result<Answer, StoreError> {
        let mut calls = self.pending.as_mut().map(std::mem::take).unwrap_or_default();
        calls.push(last);
        self.begun = true;
        let mut answers = self.conn.send(&calls)?;
        Ok(answers.pop().expect("one answer a call"))
    }

    fn run(&mut self, sql: &str, params: &[Param<'_>], rows: bool) -> Result<Answer, StoreError> {
        assert!(!self.ended, "a statement after its transaction's COMMIT: {sql}");
        let call = self.conn.call(sql, params, rows)?;
        self.flush(call)
    }
}

fn rows(answer: Answer) -> Result<Vec<Row>, StoreError> {
    let Answer::Rows(rows) = answer else { return Ok(Vec::new()) };
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let cells = (0..row.len()).map(|i| cell(row, i)).collect::<Result<_, _>>()?;
        out.push(Row(cells));
    }
    Ok(out)
}

impl Db for Pg<'_> {
    fn dialect(&self) -> &'static Dialect {
        &super::POSTGRES
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        match self.run(sql, params, false)? {
            Answer::Count(n) => Ok(n),
            Answer::Rows(r) => Ok(r.len() as u64),
        }
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        rows(self.run(sql, params, true)?)
    }

    fn defer(&mut self, sql: &str, params: &[Param<'_>]) -> Result<(), StoreError> {
        if self.pending.is_none() {
            return self.execute(sql, params).map(drop);
        }
        assert!(!self.ended, "a statement after its transaction's COMMIT: {sql}");
        let call = self.conn.call(sql, params, false)?;
        self.pending.as_mut().expect("in a transaction").push(call);
        Ok(())
    }

    fn query_last(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        if self.pending.is_none() {
            return self.query(sql, params);
        }
        assert!(!self.ended, "a statement after its transaction's COMMIT: {sql}");
        let call = self.conn.call(sql, params, true)?;
        let commit = self.conn.call("COMMIT", &[], false)?;
        let mut calls = self.pending.as_mut().map(std::mem::take).unwrap_or_default();
        calls.extend([call, commit]);
        (self.begun, self.ended) = (true, true);
        let mut answers = self.conn.send(&calls)?;
        answers.pop();
        rows(answers.pop().expect("one answer a call"))
    }
}

fn cell(row: &tokio_postgres::Row, i: usize) -> Result<Cell, tokio_postgres::Error> {
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> Cell) -> Cell {
        v.map_or(Cell::Null, f)
    }
    Ok(match *row.columns()[i].type_() {
        Type::INT2 => or_null(row.try_get::<_, Option<i16>>(i)?, |v| Cell::Int(v.into())),
        Type::INT4 => or_null(row.try_get::<_, Option<i32>>(i)?, |v| Cell::Int(v.into())),
        Type::INT8 => or_null(row.try_get::<_, Option<i64>>(i)?, Cell::Int),
        Type::BOOL => or_null(row.try_get::<_, Option<bool>>(i)?, |v| Cell::Int(v.into())),
        Type::FLOAT4 => or_null(row.try_get::<_, Option<f32>>(i)?, |v| Cell::Real(v.into())),
        Type::FLOAT8 => or_null(row.try_get::<_, Option<f64>>(i)?, Cell::Real),
        Type::JSON | Type::JSONB => or_null(row.try_get::<_, Option<serde_json::Value>>(i)?, Cell::Json),
        Type::VOID => Cell::Null,
        _ => or_null(row.try_get::<_, Option<String>>(i)?, Cell::Text),
    })
}
