// Model functions through mlproxy with pgjdbc: `java -cp postgresql.jar PredictCheck.java URL`.
// The URL carries the connection mode (preferQueryMode, prepareThreshold, binaryTransfer).
// Prints one line per result row or error; test_sql_jdbc.py compares them with the
// offline predictor. Doubles are printed in hex so nothing is lost in formatting.

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

public class PredictCheck {
    public static void main(String[] args) throws Exception {
        try (Connection conn = DriverManager.getConnection(args[0])) {
            // select list, plain Statement
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery(
                     "SELECT id, predict_price(rooms, area, city) FROM houses ORDER BY id")) {
                while (rs.next()) {
                    System.out.println("select " + rs.getInt(1) + " " + Double.toHexString(rs.getDouble(2)));
                }
            }
            // select list, PreparedStatement executed past prepareThreshold
            try (PreparedStatement ps = conn.prepareStatement(
                     "SELECT id, predict_churn(age, plan, usage, signup, promo) FROM customers WHERE id = ?")) {
                for (int id = 1; id <= 12; id++) {
                    ps.setInt(1, id);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        System.out.println("prepared " + rs.getInt(1) + " " + rs.getBoolean(2));
                    }
                }
                System.out.println("server_prepared " + ps.unwrap(org.postgresql.PGStatement.class).isUseServerPrepare());
            }
            // a portal read in slices (fetch size needs a transaction)
            conn.setAutoCommit(false);
            try (PreparedStatement ps = conn.prepareStatement(
                     "SELECT id, predict_species(f0, f1, f2, f3) FROM iris ORDER BY id")) {
                ps.setFetchSize(16);
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        System.out.println("fetch " + rs.getInt(1) + " " + rs.getString(2));
                    }
                }
            }
            conn.commit();
            // the general path in a PreparedStatement: parameters inside and outside the
            // calls, executed past prepareThreshold, in a transaction (BEGIN pipelined
            // ahead of the first Parse), read through a portal in slices
            try (PreparedStatement ps = conn.prepareStatement(
                     "SELECT id FROM houses WHERE predict_price(rooms, area + ?, city) > ? AND id <= ? "
                     + "ORDER BY predict_price(rooms, area, city) DESC, id")) {
                ps.setFetchSize(7);
                for (int k = 0; k < 4; k++) {
                    ps.setDouble(1, k * 10.0);
                    ps.setDouble(2, 400.0);
                    ps.setInt(3, 100 + k * 50);
                    try (ResultSet rs = ps.executeQuery()) {
                        while (rs.next()) {
                            System.out.println("general " + k + " " + rs.getInt(1));
                        }
                    }
                }
            }
            conn.commit();
            conn.setAutoCommit(true);
            // a call in WHERE: the general path
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery(
                     "SELECT id FROM customers WHERE predict_churn(age, plan, usage, signup, promo) ORDER BY id")) {
                while (rs.next()) {
                    System.out.println("where " + rs.getInt(1));
                }
            } catch (SQLException e) {
                System.out.println("where_error " + e.getSQLState());
            }
            try (Statement st = conn.createStatement(); ResultSet rs = st.executeQuery("SELECT 41 + 1")) {
                rs.next();
                System.out.println("after " + rs.getInt(1));
            }
        }
    }
}
