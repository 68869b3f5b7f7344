// pgjdbc through mlproxy: run as `java -cp postgresql.jar DriverCheck.java URL`.
// Prints key=value lines that tests/drivers/test_jdbc.py asserts on; any unexpected
// exception escapes, so the program exits non-zero with a stack trace.

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Arrays;
import java.util.Properties;

public class DriverCheck {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("prepareThreshold", "3");
        props.setProperty("binaryTransfer", "true");
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            String table = args[1];
            serverPrepared(conn);
            batch(conn, table);
            fetchSize(conn);
            errorThenRecovery(conn);
        }
    }

    /** Past prepareThreshold executions pgjdbc switches to a named server-side
     *  statement and binary results. */
    static void serverPrepared(Connection conn) throws SQLException {
        String sql = "SELECT ?::int4 * 2, ?::numeric + 1, now() - ?::interval, ?::bytea";
        long sum = 0;
        boolean serverSide = false;
        try (PreparedStatement ps = conn.prepareStatement(sql)) {
            for (int i = 0; i < 10; i++) {
                ps.setInt(1, i);
                ps.setBigDecimal(2, new BigDecimal("1.5"));
                ps.setString(3, "1 day");
                ps.setBytes(4, new byte[] {1, 2, (byte) i});
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    sum += rs.getInt(1);
                    check(rs.getBigDecimal(2).compareTo(new BigDecimal("2.5")) == 0, "numeric");
                    check(rs.getTimestamp(3) != null, "timestamptz");
                    check(Arrays.equals(rs.getBytes(4), new byte[] {1, 2, (byte) i}), "bytea");
                }
            }
            serverSide = ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare();
        }
        System.out.println("prepared_sum=" + sum);
        System.out.println("prepared_server_side=" + serverSide);
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery(
                 "SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql")) {
            rs.next();
            System.out.println("prepared_on_server=" + rs.getInt(1));
        }
    }

    static void batch(Connection conn, String table) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, name text)");
        }
        int updated = 0;
        try (PreparedStatement ps = conn.prepareStatement("INSERT INTO " + table + " VALUES (?, ?)")) {
            for (int i = 0; i < 1000; i++) {
                ps.setInt(1, i);
                ps.setString(2, "name " + i);
                ps.addBatch();
            }
            for (int n : ps.executeBatch()) {
                updated += n;
            }
        }
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT count(*), sum(id) FROM " + table)) {
            rs.next();
            System.out.println("batch_updated=" + updated);
            System.out.println("batch_rows=" + rs.getInt(1) + "," + rs.getLong(2));
        }
    }

    /** In a transaction with a fetch size, pgjdbc executes a portal with a row
     *  limit: the server answers each Execute with PortalSuspended until the end. */
    static void fetchSize(Connection conn) throws SQLException {
        conn.setAutoCommit(false);
        long rows = 0;
        long sum = 0;
        try (Statement st = conn.createStatement()) {
            st.setFetchSize(250);
            try (ResultSet rs = st.executeQuery(
                    "SELECT i, repeat('x', 100) FROM generate_series(1, 20000) i")) {
                while (rs.next()) {
                    rows++;
                    sum += rs.getInt(1);
                }
            }
        }
        conn.commit();
        conn.setAutoCommit(true);
        System.out.println("fetch_rows=" + rows + "," + sum);
    }

    static void errorThenRecovery(Connection conn) throws SQLException {
        try (Statement st = conn.createStatement()) {
            st.executeQuery("SELECT * FROM drv_jdbc_missing");
        } catch (SQLException e) {
            System.out.println("error_state=" + e.getSQLState());
        }
        conn.setAutoCommit(false);
        try (Statement st = conn.createStatement()) {
            st.execute("SELECT 1/0");
        } catch (SQLException e) {
            System.out.println("tx_error_state=" + e.getSQLState());
            conn.rollback();
        }
        conn.setAutoCommit(true);
        try (Statement st = conn.createStatement();
             ResultSet rs = st.executeQuery("SELECT 'recovered'")) {
            rs.next();
            System.out.println("after_error=" + rs.getString(1));
        }
    }

    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError("wrong value for " + what);
        }
    }
}
