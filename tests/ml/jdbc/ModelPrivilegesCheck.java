import java.sql.*;

/** GRANT/REVOKE ON MODEL through pgjdbc (its extended protocol), their effect on a
 *  statement the grantee prepared before, and the model function's argument names as
 *  JDBC metadata shows them. Args: owner URL, grantee URL, grantee name. One result
 *  per line: "key value...". */
public class ModelPrivilegesCheck {
    static final String CALL = "SELECT pm_predict(a, b) FROM pts WHERE id <= ? ORDER BY id";

    static int rows(PreparedStatement ps) throws SQLException {
        ps.setInt(1, 3);
        int n = 0;
        try (ResultSet rs = ps.executeQuery()) { while (rs.next()) n++; }
        return n;
    }

    static String attempt(PreparedStatement ps) {
        try { return "rows " + rows(ps); }
        catch (SQLException e) { return "error " + e.getSQLState(); }
    }

    public static void main(String[] args) throws Exception {
        try (Connection owner = DriverManager.getConnection(args[0]);
             Connection grantee = DriverManager.getConnection(args[1])) {
            PreparedStatement call = grantee.prepareStatement(CALL);
            System.out.println("before " + attempt(call));
            try (PreparedStatement grant = owner.prepareStatement(
                    "GRANT EXECUTE ON MODEL pm TO " + args[2])) {
                grant.execute();
            }
            for (int i = 0; i < 3; i++) System.out.println("granted " + attempt(call));
            try (Statement st = owner.createStatement()) {
                st.execute("REVOKE ALL ON MODEL pm FROM " + args[2]);
            }
            System.out.println("revoked " + attempt(call));
            DatabaseMetaData meta = grantee.getMetaData();
            try (ResultSet rs = meta.getFunctionColumns(null, "public", "pm_predict%", "%")) {
                while (rs.next()) {
                    System.out.println("column " + rs.getString("FUNCTION_NAME") + " "
                                       + rs.getString("COLUMN_NAME") + " " + rs.getShort("COLUMN_TYPE"));
                }
            }
            try (ResultSet rs = grantee.createStatement().executeQuery("SELECT 41 + 1")) {
                rs.next();
                System.out.println("after " + rs.getInt(1));
            }
        }
    }
}
