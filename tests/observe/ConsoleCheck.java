// pgjdbc against mlproxy's admin console: run as
// `java -cp postgresql.jar ConsoleCheck.java URL`. Prints key=value lines that
// tests/observe/test_console.py asserts on; an unexpected exception exits non-zero.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class ConsoleCheck {
    public static void main(String[] args) throws Exception {
        Properties props = new Properties();
        props.setProperty("prepareThreshold", "1");  // named server-side statements at once
        props.setProperty("binaryTransfer", "true");  // binary int8/float8 results
        try (Connection conn = DriverManager.getConnection(args[0], props)) {
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SHOW STATS")) {
                ResultSetMetaData md = rs.getMetaData();
                List<String> names = new ArrayList<>();
                for (int i = 1; i <= md.getColumnCount(); i++) names.add(md.getColumnName(i));
                System.out.println("stats_columns=" + String.join(",", names));
                while (rs.next()) {
                    if (rs.getString("database").equals(args[1]))
                        System.out.println("stats_queries=" + rs.getLong("total_query_count"));
                }
            }
            long sessions = 0;
            try (PreparedStatement ps = conn.prepareStatement("SHOW SESSIONS")) {
                for (int i = 0; i < 3; i++) {
                    try (ResultSet rs = ps.executeQuery()) {
                        sessions = 0;
                        while (rs.next()) {
                            if (rs.getString("database").equals("mlproxy")
                                    && rs.getString("relay").equals("console")
                                    && rs.getDouble("age_seconds") >= 0)
                                sessions++;
                        }
                    }
                }
                System.out.println("server_prepared="
                        + ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare());
            }
            System.out.println("console_sessions=" + sessions);
            try (Statement st = conn.createStatement()) {
                st.executeQuery("SHOW NOTHING");
                System.out.println("unknown_state=none");
            } catch (SQLException e) {
                System.out.println("unknown_state=" + e.getSQLState());
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SHOW CONFIG")) {
                int rows = 0;
                while (rs.next()) rows++;
                System.out.println("config_rows=" + rows);
            }
        }
    }
}
