//! Where the daemon runs: region and VPC from the instance metadata
//! service when the command line does not give them.

use std::time::Duration;

use super::client::causes;

/// Region and VPC from the command line, else from the instance metadata
/// service (IMDSv2) of the EC2 instance we run on.
pub async fn discover(
    region: Option<String>,
    vpc: Option<String>,
) -> Result<(String, String), String> {
    if let (Some(region), Some(vpc)) = (&region, &vpc) {
        return Ok((region.clone(), vpc.clone()));
    }
    let missing = match (&region, &vpc) {
        (None, None) => "-r/--region and -v/--vpc",
        (None, _) => "-r/--region",
        _ => "-v/--vpc",
    };
    if std::env::var("AWS_EC2_METADATA_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(format!(
            "give {missing}: the instance metadata service is disabled (AWS_EC2_METADATA_DISABLED)"
        ));
    }
    let imds = aws_config::imds::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .read_timeout(Duration::from_secs(1))
        .operation_timeout(Duration::from_secs(3))
        .max_attempts(2)
        .build();
    let get = |path: String| {
        let imds = &imds;
        async move {
            imds.get(path.clone())
                .await
                .map(|value| value.as_ref().trim().to_string())
                .map_err(|e| {
                    format!(
                        "give {missing}: the instance metadata service did not answer {path} (not on EC2?): {}",
                        causes(&e)
                    )
                })
        }
    };
    let region = match region {
        Some(region) => region,
        None => get("/latest/meta-data/placement/region".into()).await?,
    };
    let vpc = match vpc {
        Some(vpc) => vpc,
        None => {
            let mac = get("/latest/meta-data/mac".into()).await?;
            get(format!(
                "/latest/meta-data/network/interfaces/macs/{mac}/vpc-id"
            ))
            .await?
        }
    };
    Ok((region, vpc))
}
