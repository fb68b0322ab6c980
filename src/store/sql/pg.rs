//! [`Db`] on a PostgreSQL client or transaction: statements rewritten to `$N` and
//! prepared once per connection; a [`Param`] written as the type PostgreSQL inferred
//! for its place (`int4` or `int8`, `text` or `jsonb`).

use std::collections::HashMap;

use bytes::BytesMut;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{GenericClient, Statement};

use super::{Cell, Db, Dialect, Param, Row};
use crate::store::StoreError;

pub(crate) struct Pg<'a, C: GenericClient> {
    pub(crate) client: &'a mut C,
    pub(crate) statements: &'a mut HashMap<String, Statement>,
}

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

    postgres::types::to_sql_checked!();
}

impl<C: GenericClient> Pg<'_, C> {
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(&dollars(sql))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }
}

impl<C: GenericClient> Db for Pg<'_, C> {
    fn dialect(&self) -> &'static Dialect {
        &super::POSTGRES
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(self.client.execute(&statement, &params)?)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Row>, StoreError> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let rows = self.client.query(&statement, &params)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let cells = (0..row.len()).map(|i| cell(row, i)).collect::<Result<_, _>>()?;
            out.push(Row(cells));
        }
        Ok(out)
    }
}

fn cell(row: &postgres::Row, i: usize) -> Result<Cell, postgres::Error> {
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
